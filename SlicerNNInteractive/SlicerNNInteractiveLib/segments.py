"""Reading segments as (k, j, i) masks on the volume's grid, and cheap change stamps for volumes and segments.

A segment's binary labelmap may be shared with other segments (one label value each) and is stored
shrunk to its non-zero extent; reads therefore threshold by label value and pad to the asked box.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .errors import PromptError
from .geometry import KJI_TO_IJK, VolumeGeometry, array_to_matrix, node_to_world

BINARY_LABELMAP = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()



class ImageStamp(NamedTuple):
    """What the backend's copy of an image depends on: the node, its image object and that object's MTime."""

    volume_node_id: str
    image_address: str | None
    image_mtime: int
    spacing: tuple[float, ...]


class SegmentStamp(NamedTuple):
    """What the backend's copy of a segment depends on (see :func:`segment_stamp`)."""

    segmentation_node_id: str
    segment_id: str
    segment_address: str
    labelmap_address: str | None
    labelmap_mtime: int
    label_value: int
    index_to_seg: tuple[float, ...]


def index_to_segmentation(geometry: VolumeGeometry, segmentation_node) -> np.ndarray:
    """(k, j, i) of the volume -> the segmentation node's local RAS (where its labelmaps live)."""
    return np.linalg.inv(node_to_world(segmentation_node, "segmentation")) @ geometry.index_to_world


def box_extent(box) -> tuple[int, int, int, int, int, int]:
    """A (k, j, i) half-open box -> VTK's inclusive (i0, i1, j0, j1, k0, k1) extent."""
    (k0, k1), (j0, j1), (i0, i1) = box
    return (i0, i1 - 1, j0, j1 - 1, k0, k1 - 1)


def grid_image(index_to_seg: np.ndarray, box, scalars: np.ndarray | None = None) -> slicer.vtkOrientedImageData:
    """An oriented image on the volume's grid covering ``box``; filled from a (k, j, i) uint8 array if given."""
    image = slicer.vtkOrientedImageData()
    image.SetGeometryFromImageToWorldMatrix(array_to_matrix(index_to_seg @ KJI_TO_IJK))
    image.SetExtent(*box_extent(box))
    if scalars is not None:
        flat = np.ascontiguousarray(scalars, dtype=np.uint8).ravel()
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    return image


def full_box(shape: tuple[int, int, int]):
    return tuple((0, n) for n in shape)


def read_mask(segmentation_node, segment_id: str, index_to_seg: np.ndarray, box) -> np.ndarray:
    """The segment's voxels inside ``box`` as a (k, j, i) uint8 0/1 array on the volume's grid."""
    shape = tuple(hi - lo for lo, hi in box)
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation(BINARY_LABELMAP) if segment is not None else None
    out = np.zeros(shape, dtype=np.uint8)
    if labelmap is None or _is_empty(labelmap.GetExtent()):
        return out
    reference = grid_image(index_to_seg, box)
    if slicer.vtkOrientedImageDataResample.DoGeometriesMatch(reference, labelmap):
        _copy_overlap(labelmap, segment.GetLabelValue(), box, out)
        return out
    # Different grid (e.g. an oversampled segmentation): let Slicer resample, nearest neighbour.
    single = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, single, False
    )
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(single, reference, resampled)
    _copy_overlap(resampled, 1, box, out)
    return out


def _copy_overlap(labelmap, label: int, box, out: np.ndarray) -> None:
    i0, i1, j0, j1, k0, k1 = labelmap.GetExtent()
    if _is_empty((i0, i1, j0, j1, k0, k1)) or labelmap.GetPointData().GetScalars() is None:
        return
    data = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    data = data.reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    src, dst = [], []
    for (lo, hi), start, stop in zip(box, (k0, j0, i0), (k1 + 1, j1 + 1, i1 + 1)):
        a, b = max(lo, start), min(hi, stop)
        if b <= a:
            return
        src.append(slice(a - start, b - start))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = data[tuple(src)] == label


def _is_empty(extent) -> bool:
    return extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]


def ensure_segmentation_grid(segmentation_node, volume_node, index_to_seg: np.ndarray) -> None:
    """Make the segmentation's labelmaps live on the volume's voxel grid, or say why they cannot.

    nnInteractive answers on the volume's grid; results are written voxel for voxel and the
    Segment Editor's intensity masking needs the grids to match.
    """
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSourceRepresentationName() != BINARY_LABELMAP:
        if segmentation.GetNumberOfSegments() and not segmentation.CreateRepresentation(BINARY_LABELMAP):
            raise PromptError(
                "The segmentation cannot be converted to a binary labelmap: in Segment Editor, let it switch the "
                "source representation to binary labelmap, then try again."
            )
        segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    reference = slicer.vtkOrientedImageData()
    current = segmentation.GetConversionParameter(parameter)
    if current and slicer.vtkSegmentationConverter.DeserializeImageGeometry(current, reference, False):
        if slicer.vtkOrientedImageDataResample.DoGeometriesMatch(reference, grid_image(index_to_seg, ((0, 1),) * 3)):
            return
        if _has_content(segmentation):
            raise PromptError(
                f"The segmentation '{segmentation_node.GetName()}' uses a different voxel grid than the volume "
                f"'{volume_node.GetName()}'. In Segment Editor, click 'Specify geometry', choose the volume as "
                "source geometry without oversampling, or start a new segmentation."
            )
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)


def _has_content(segmentation) -> bool:
    for index in range(segmentation.GetNumberOfSegments()):
        labelmap = segmentation.GetNthSegment(index).GetRepresentation(BINARY_LABELMAP)
        if labelmap is not None and not _is_empty(labelmap.GetExtent()):
            return True
    return False


# -- change stamps ---------------------------------------------------------------------------------
def image_stamp(volume_node) -> ImageStamp:
    """Changes whenever the voxels or spacing the backend would get change (node, image object, MTime)."""
    image = volume_node.GetImageData()
    return ImageStamp(
        volume_node.GetID(),
        image.GetAddressAsString("vtkImageData") if image is not None else None,
        image.GetMTime() if image is not None else 0,
        tuple(round(s, 9) for s in volume_node.GetSpacing()),
    )


def segmentation_stamp(segmentation_node, index_to_seg: np.ndarray) -> tuple[SegmentStamp | None, ...]:
    """Changes whenever any segment may have changed, or segments were added or removed."""
    ids = segmentation_node.GetSegmentation().GetSegmentIDs()
    return tuple(segment_stamp(segmentation_node, segment_id, index_to_seg) for segment_id in ids)


def segment_stamp(segmentation_node, segment_id: str, index_to_seg: np.ndarray) -> SegmentStamp | None:
    """Changes whenever the segment's voxels may have changed (any effect, undo, transform); None if it is gone.

    The labelmap object's MTime moves with every write to its voxels, and undo swaps in other
    objects; a shared labelmap also moves when its other segments change (a harmless re-send).
    """
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return None
    labelmap = segment.GetRepresentation(BINARY_LABELMAP)
    return SegmentStamp(
        segmentation_node.GetID(),
        segment_id,
        segment.GetAddressAsString("vtkSegment"),
        labelmap.GetAddressAsString("vtkOrientedImageData") if labelmap is not None else None,
        labelmap.GetMTime() if labelmap is not None else 0,
        segment.GetLabelValue(),
        tuple(np.round(index_to_seg, 9).ravel()),
    )
