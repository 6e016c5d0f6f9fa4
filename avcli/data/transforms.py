"""Former home of the video transforms; kept so existing imports work. See `avcli.data.video_transforms`
(video) and `avcli.data.audio_transforms` (audio)."""

from avcli.data.video_transforms import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_video,
    eval_video,
    normalize_video,
    random_resized_crop_box,
)
