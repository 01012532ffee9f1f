"""What every backend adapter offers its composition root: a health probe and a release."""

from __future__ import annotations

import abc


class Backend(abc.ABC):
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DependencyUnavailable unless the backend answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; adapters that hold none do nothing."""
