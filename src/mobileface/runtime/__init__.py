"""The torch-free runtime: ONNX Runtime embedders, scoring and 1:1 verification.

```python
from mobileface.runtime import FaceVerifier, open_embedder

verifier = FaceVerifier(open_embedder("model.onnx"))
result = verifier.verify("a.jpg", "b.jpg")   # score, same, threshold, faces, timings
result.operating_point                       # FAR 1e-3 and the TAR calibrated there
strict = FaceVerifier(verifier.embedder, far=1e-4)   # the threshold calibrated at FAR 1e-4
choose_precision().model                     # the default weights for this CPU: fp32 or int8
```

Nothing here imports PyTorch, directly or not (checkpoints ``.pt`` opened through
:func:`open_embedder` are the one exception, and import it only then).
"""

from .embedder import Embedder, OnnxEmbedder, open_embedder
from .metadata import DEFAULT_FAR_KEY, decode_metadata, encode_metadata
from .precision import PrecisionChoice, choose_precision
from .preprocess import Normalization, as_crop_batch
from .scoring import cosine_matrix, cosine_similarity, l2_normalize
from .verifier import (
    FALLBACK_THRESHOLD,
    FaceVerifier,
    OperatingPoint,
    VerificationResult,
    calibrated_fars,
    operating_point_key,
    resolve_threshold,
)

__all__ = [
    "DEFAULT_FAR_KEY",
    "FALLBACK_THRESHOLD",
    "Embedder",
    "FaceVerifier",
    "Normalization",
    "OnnxEmbedder",
    "OperatingPoint",
    "PrecisionChoice",
    "VerificationResult",
    "as_crop_batch",
    "calibrated_fars",
    "choose_precision",
    "cosine_matrix",
    "cosine_similarity",
    "decode_metadata",
    "encode_metadata",
    "l2_normalize",
    "open_embedder",
    "operating_point_key",
    "resolve_threshold",
]
