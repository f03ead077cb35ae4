"""Reading YAML safely: plain data only, no aliases, bounded nesting.

Every YAML file fpga4ml reads goes through `load_yaml`. PyYAML's SafeLoader already builds only
plain data (no Python objects, no code), but it accepts aliases (``*name``), which let a 1 KB file
describe billions of entries (the "billion laughs" file): the loaded objects are shared, and
whatever later walks or writes them out (config.yml, a deep copy) expands them. hls4ml
configurations never need aliases, so they are refused with the file, line and column; so is
nesting deeper than MAX_DEPTH levels (PyYAML composes nodes recursively).
"""

from __future__ import annotations

from typing import Any

import yaml

from .config import ConfigError

#: deepest nesting of mappings and lists accepted (hls4ml configurations use four or five levels)
MAX_DEPTH = 64


class _Refused(yaml.YAMLError):
    """An alias or too deep nesting, with the position it was found at."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (and merge keys, which are aliases) and nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, refusing an alias or one level too many."""
        mark = self.peek_event().start_mark
        where = f'line {mark.line + 1}, column {mark.column + 1}'
        if self.check_event(yaml.AliasEvent):
            raise _Refused(f'{where}: YAML alias *{self.peek_event().anchor} is refused (aliases can expand a few '
                           'bytes into billions of entries); write the values out instead')
        if self._depth >= MAX_DEPTH:
            raise _Refused(f'{where}: nested more than {MAX_DEPTH} levels deep')
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _keras_model_path(loader: _StrictLoader, node: yaml.Node) -> str:
    """hls4ml's ``!keras_model path`` tag: the path as a plain string (nothing is loaded here)."""
    return loader.construct_scalar(node)


_StrictLoader.add_constructor('!keras_model', _keras_model_path)


def load_yaml(text: str, source: str) -> Any:
    """Plain data (dicts, lists, strings, numbers) from YAML `text`; ConfigError naming `source` otherwise.

    `source` names the text in messages (the file path). Aliases, Python tags and nesting deeper
    than MAX_DEPTH are refused; hls4ml's ``!keras_model path`` tag reads as the path string.
    """
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as err:
        raise ConfigError(f'{source}: {err}') from None
    except yaml.YAMLError as err:
        raise ConfigError(f'{source} is not valid YAML: {" ".join(str(err).split())}') from None
    finally:
        loader.dispose()
