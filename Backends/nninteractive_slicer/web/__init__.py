"""``nninteractive-slicer web``: nnInteractive in a web browser, on trame-slicer (Slicer's MRML, rendered here).

The web app is a second host of the module's Qt-free ``SlicerNNInteractiveLogic``, beside the Slicer widget:
it binds the page's buttons and the views' mouse events to the same Logic, session, markups and segment
writer. It needs the ``[web]`` extra (trame-slicer, in its own venv: trame-slicer pins slicer-core<5.12).
"""
