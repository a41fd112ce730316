"""A disk that fills up under the spool's writer."""


class FullDisk:
    """A writer that writes half of what it is given, then fails as a full disk does."""

    def __init__(self, real):
        self.real = real

    def tell(self):
        return self.real.tell()

    def write(self, data):
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(28, "No space left on device")

    def close(self):
        self.real.close()
