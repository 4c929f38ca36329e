"""User-facing error types.

Every error a user can cause (a bad task file, a broken raster, a missing sensor) is raised as
one of these, with a message that names the file, band or field and says how to fix it. The CLI
prints the message without a traceback.

An invalid architecture is `fusion.ArchError` (fusion sits below autors, so it cannot derive from
`AutorsError`); autors raises that one too, and the CLI reports it like these.
"""

from __future__ import annotations


class AutorsError(Exception):
    """Base class for errors caused by user input; the CLI prints only the message."""


class TaskFileError(AutorsError):
    """The task file is missing, is not valid YAML, or has a bad field."""


class RasterError(AutorsError):
    """A raster cannot be read, lacks georeferencing, or does not match what the task declares."""


class DataError(AutorsError):
    """The data is readable but unusable for the task (no overlap, empty class, all nodata...)."""


class SearchError(AutorsError):
    """A search cannot start or resume (bad run folder, unknown strategy...)."""


class ModelFolderError(AutorsError):
    """An exported model folder is incomplete, corrupted or does not fit the given inputs."""


class SynthConfigError(AutorsError):
    """A synthetic-scene setting is invalid; the message names the field and the valid range."""


class PluginError(AutorsError):
    """A plugin module (a task's `plugins`, a model card's, an `autors.plugins` entry point)
    cannot be imported or fails while registering its parts."""


class InputMismatchError(DataError):
    """The given rasters do not look like what the model was trained on, or like what the task
    declares (pixel size, units, scale): `autors.export.input_check` names the sensor, band,
    file, both values and the fix."""
