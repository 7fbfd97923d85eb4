"""The one exception class of the data package."""


class DatasetError(ValueError):
    """A dataset cannot be read: missing root/list/file, corrupt image, size mismatch, bad config."""


class CorruptFileError(DatasetError):
    """An image or label file cannot be decoded (skippable with `dataset.skip_corrupt: true`)."""
