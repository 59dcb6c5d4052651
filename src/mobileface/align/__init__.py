"""Faces in, aligned crops out: detection with 5 landmarks, and alignment onto templates.

```python
from mobileface.image import load_image
from mobileface.align import create_detector, align_image

detector = create_detector("yunet")               # or "dlib"
crop, face = align_image(load_image("photo.jpg"), detector, size=(112, 112))
```

Everything here is NumPy and OpenCV (dlib for the second backend); nothing imports PyTorch.
Sizes are ``(height, width)``.
"""

from .detect import (
    DETECTORS,
    FAST_YUNET,
    PRECISE_YUNET,
    align_image,
    available_detectors,
    create_detector,
)
from .dlib_backend import DlibDetector
from .face import DEFAULT_POLICY, POLICIES, Detector, Face, select_face
from .template import (
    ARCFACE_TEMPLATE_112,
    CENTERED_FACE_POINTS,
    ARCFACE_TEMPLATE_112x96,
    align_face,
    center_crop,
    estimate_similarity,
    loose_crop,
    parse_size,
    template_for,
)
from .yunet import DETECT_SIDES, YUNET_FILE, YuNetDetector, yunet_model_path

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "ARCFACE_TEMPLATE_112x96",
    "CENTERED_FACE_POINTS",
    "DEFAULT_POLICY",
    "DETECTORS",
    "DETECT_SIDES",
    "POLICIES",
    "PRECISE_YUNET",
    "YUNET_FILE",
    "Detector",
    "DlibDetector",
    "FAST_YUNET",
    "Face",
    "YuNetDetector",
    "align_face",
    "align_image",
    "available_detectors",
    "center_crop",
    "create_detector",
    "estimate_similarity",
    "loose_crop",
    "parse_size",
    "select_face",
    "template_for",
    "yunet_model_path",
]
