"""JSON Schemas merged over every sample, in bounded memory.

:class:`SchemaAccumulator` folds JSON values in one at a time and keeps only counts,
formats, small sets of distinct values and one sample transaction id per observed kind.
:meth:`SchemaAccumulator.schema` then gives a JSON Schema (OpenAPI 3.1 dialect):

- ``integer``, ``number`` (integers and floats seen together), ``boolean``, ``string``
  with a ``format`` when every string had it (``date-time``, ``date``, ``uuid``,
  ``email``, ``uri``), and an ``enum`` for a small closed set of short strings;
- nulls as a type union (``"type": ["string", "null"]``);
- objects with ``properties`` and ``required`` = the fields present in every sample;
  objects keyed by ids, or with more than :data:`MAX_PROPERTIES` keys, become maps
  (``additionalProperties``);
- arrays with one merged ``items`` schema;
- ``oneOf`` only when objects genuinely differ: families of samples that share no field
  (families that come to share one are merged, so the order of samples does not matter;
  an empty object ``{}`` makes every field optional).
"""

from __future__ import annotations

from typing import Any

from postcap.apispec.values import id_like, secret_name, secret_value, string_format

ENUM_MAX = 6          # at most this many distinct values make an enum
ENUM_MIN_SAMPLES = 3  # ... seen at least this many times each on average
ENUM_MAX_LENGTH = 40
MAX_PROPERTIES = 200
MAX_SHAPES = 4
MAX_DEPTH = 16


class _Kind:
    """Counts of one JSON type at one place, and the first transaction it came from."""

    __slots__ = ("count", "sample", "values")

    def __init__(self, sample: str | None) -> None:
        self.count = 0
        self.sample = sample
        self.values: set[Any] | None = set()

    def add_value(self, value: Any) -> None:
        if self.values is not None:
            self.values.add(value)
            if len(self.values) > ENUM_MAX:
                self.values = None


class _Strings(_Kind):
    __slots__ = ("formats", "long")

    def __init__(self, sample: str | None) -> None:
        super().__init__(sample)
        #: format (or None) → [count, first sample]
        self.formats: dict[str | None, list[Any]] = {}
        self.long = False


class ObjectShape:
    """One family of objects (samples sharing fields)."""

    __slots__ = ("count", "sample", "properties", "missing", "map_values")

    def __init__(self, sample: str | None) -> None:
        self.count = 0
        self.sample = sample
        self.properties: dict[str, SchemaAccumulator] = {}
        #: field → a sample transaction where it was absent
        self.missing: dict[str, str | None] = {}
        self.map_values: SchemaAccumulator | None = None

    def add(self, value: dict[str, Any], sample: str | None, depth: int, secret: bool) -> None:
        self.count += 1
        if self.map_values is None and value:
            properties = self.properties
            new = [k for k in value if k not in properties]
            if new and (len(properties) + len(new) > MAX_PROPERTIES
                        or all(id_like(k) for k in value)):
                self._become_map()
        if self.map_values is not None:
            for item in value.values():
                self.map_values.add(item, sample, depth + 1, secret)
            return
        for name, item in value.items():
            accumulator = self.properties.get(name)
            if accumulator is None:
                accumulator = self.properties[name] = SchemaAccumulator()
                if self.count > 1:
                    self.missing[name] = self.sample
            accumulator.add(item, sample, depth + 1, secret or secret_name(name))
        if len(value) < len(self.properties):
            for name in self.properties:
                if name not in value and name not in self.missing:
                    self.missing[name] = sample

    def _become_map(self) -> None:
        merged = SchemaAccumulator()
        for accumulator in self.properties.values():
            merged.merge(accumulator)
        self.map_values = merged
        self.properties = {}
        self.missing = {}

    def required(self) -> list[str]:
        return sorted(n for n, a in self.properties.items() if a.count == self.count)

    def schema(self) -> dict[str, Any]:
        if self.map_values is not None:
            return {"type": "object", "additionalProperties": self.map_values.schema()}
        result: dict[str, Any] = {"type": "object"}
        if self.properties:
            result["properties"] = {n: a.schema() for n, a in sorted(self.properties.items())}
        required = self.required()
        if required:
            result["required"] = required
        return result

    def merge(self, other: "ObjectShape") -> None:
        if self.count and other.count:
            for name in self.properties.keys() - other.properties.keys():
                self.missing.setdefault(name, other.sample)
            for name in other.properties.keys() - self.properties.keys():
                self.missing.setdefault(name, self.sample)
        for name, sample in other.missing.items():
            self.missing.setdefault(name, sample)
        self.count += other.count
        self.sample = self.sample or other.sample
        for name, accumulator in other.properties.items():
            self.properties.setdefault(name, SchemaAccumulator()).merge(accumulator)
        if other.map_values is not None and self.map_values is None:
            self._become_map()
        if self.map_values is not None:
            if other.map_values is not None:
                self.map_values.merge(other.map_values)
            for accumulator in other.properties.values():
                self.map_values.merge(accumulator)


def _joins(shape: ObjectShape, keys: Any) -> bool:
    """Does an object with ``keys`` belong to ``shape``?  Anything joins a map, otherwise
    they must share a field."""
    return shape.map_values is not None or not shape.properties or any(key in shape.properties for key in keys)


class SchemaAccumulator:
    """See the module docstring.  ``count`` is how many values reached this place."""

    __slots__ = ("count", "kinds", "shapes", "items", "empty_objects", "empty_sample")

    def __init__(self) -> None:
        self.count = 0
        #: JSON type name → _Kind ("null", "boolean", "integer", "number", "string", "object", "array")
        self.kinds: dict[str, _Kind] = {}
        self.shapes: list[ObjectShape] = []
        self.items: SchemaAccumulator | None = None
        #: ``{}`` samples, folded into every shape when read (they make every field optional)
        self.empty_objects = 0
        self.empty_sample: str | None = None

    def add(self, value: Any, sample: str | None = None, depth: int = 0, secret: bool = False) -> None:
        """Fold one JSON value in; ``secret`` says it sits under a secret's name (no enum)."""
        self.count += 1
        if depth > MAX_DEPTH:
            return
        if value is None:
            self._kind("null", sample).count += 1
        elif isinstance(value, bool):
            self._kind("boolean", sample).count += 1
        elif isinstance(value, int):
            self._kind("integer", sample).count += 1
        elif isinstance(value, float):
            self._kind("number", sample).count += 1
        elif isinstance(value, str):
            self._add_string(value, sample, secret)
        elif isinstance(value, dict):
            self._kind("object", sample).count += 1
            if value:
                self._shape_for(value, sample).add(value, sample, depth, secret)
            else:
                self.empty_objects += 1
                self.empty_sample = self.empty_sample or sample
        elif isinstance(value, list):
            self._kind("array", sample).count += 1
            if self.items is None:
                self.items = SchemaAccumulator()
            for item in value:
                self.items.add(item, sample, depth + 1, secret)

    def _kind(self, name: str, sample: str | None) -> _Kind:
        kind = self.kinds.get(name)
        if kind is None:
            kind = self.kinds[name] = _Strings(sample) if name == "string" else _Kind(sample)
        return kind

    def _add_string(self, value: str, sample: str | None, secret: bool) -> None:
        kind = self._kind("string", sample)
        assert isinstance(kind, _Strings)
        kind.count += 1
        fmt = string_format(value)
        seen = kind.formats.get(fmt)
        if seen is None:
            kind.formats[fmt] = [1, sample]
        else:
            seen[0] += 1
        if kind.values is None:
            return
        if secret or len(value) > ENUM_MAX_LENGTH or secret_value(value):
            kind.values = None
            kind.long = True
        else:
            kind.add_value(value)

    def _shape_for(self, value: dict[str, Any], sample: str | None) -> ObjectShape:
        for shape in self.shapes:
            if _joins(shape, value):
                return shape
        if len(self.shapes) >= MAX_SHAPES:
            return self.shapes[0]
        shape = ObjectShape(sample)
        self.shapes.append(shape)
        return shape

    # -- reading -------------------------------------------------------------------------

    def types(self) -> list[str]:
        """The JSON types seen, integers folded into numbers when both were seen."""
        names = [n for n in ("object", "array", "string", "integer", "number", "boolean", "null")
                 if n in self.kinds]
        if "integer" in names and "number" in names:
            names.remove("integer")
        return names

    def string_format(self) -> str | None:
        strings = self.kinds.get("string")
        if not isinstance(strings, _Strings) or len(strings.formats) != 1:
            return None
        return next(iter(strings.formats))

    def format_samples(self) -> dict[str | None, str | None]:
        """Each string format seen (None: no format) → a sample transaction id."""
        strings = self.kinds.get("string")
        if not isinstance(strings, _Strings):
            return {}
        return {fmt: seen[1] for fmt, seen in strings.formats.items()}

    def enum(self) -> list[Any] | None:
        strings = self.kinds.get("string")
        if strings is None or strings.values is None or not strings.values:
            return None
        if self.string_format() is not None or set(self.kinds) - {"string", "null"}:
            return None
        if strings.count < ENUM_MIN_SAMPLES * len(strings.values) or len(strings.values) < 1:
            return None
        return sorted(strings.values)

    def object_shapes(self) -> list[ObjectShape]:
        """The object families, those that came to share a field merged (so the result
        does not depend on the order the samples came in)."""
        merged = True
        while merged and len(self.shapes) > 1:
            merged = False
            for i, first in enumerate(self.shapes):
                for second in self.shapes[i + 1:]:
                    if _joins(first, second.properties) or _joins(second, first.properties):
                        first.merge(second)
                        self.shapes.remove(second)
                        merged = True
                        break
                if merged:
                    break
        if self.empty_objects:
            if not self.shapes:
                self.shapes.append(ObjectShape(self.empty_sample))
            for shape in self.shapes:
                shape.count += self.empty_objects
                for name in shape.properties:
                    shape.missing.setdefault(name, self.empty_sample)
            self.empty_objects = 0
        return self.shapes

    def schema(self) -> dict[str, Any]:
        types = self.types()
        if not types:
            return {}
        if len(self.object_shapes()) > 1:
            alternatives = [shape.schema() for shape in self.shapes]
            rest = [t for t in types if t != "object"]
            if rest:
                alternatives.append(self._plain_schema(rest))
            return {"oneOf": alternatives}
        return self._plain_schema(types)

    def _plain_schema(self, types: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        if "object" in types and self.shapes:
            shape = self.shapes[0].schema()
            shape.pop("type")
            result.update(shape)
        if "array" in types:
            result["items"] = self.items.schema() if self.items is not None else {}
        if "string" in types:
            fmt = self.string_format()
            if fmt is not None:
                result["format"] = fmt
            enum = self.enum()
            if enum is not None:
                result["enum"] = enum + ([None] if "null" in types else [])
        return result

    def merge(self, other: "SchemaAccumulator") -> None:
        """Fold another accumulator of the same place in (templates that turned out equal)."""
        self.count += other.count
        self.empty_objects += other.empty_objects
        self.empty_sample = self.empty_sample or other.empty_sample
        for name, kind in other.kinds.items():
            mine = self._kind(name, kind.sample)
            mine.count += kind.count
            if kind.values is None or mine.values is None:
                mine.values = None
            else:
                for value in kind.values:
                    mine.add_value(value)
            if isinstance(kind, _Strings) and isinstance(mine, _Strings):
                mine.long = mine.long or kind.long
                for fmt, (count, sample) in kind.formats.items():
                    seen = mine.formats.setdefault(fmt, [0, sample])
                    seen[0] += count
        for shape in other.shapes:
            target = next((s for s in self.shapes if _joins(s, shape.properties) or _joins(shape, s.properties)),
                          None)
            if target is None and len(self.shapes) < MAX_SHAPES:
                self.shapes.append(shape)
            else:
                (target or self.shapes[0]).merge(shape)
        if other.items is not None:
            if self.items is None:
                self.items = SchemaAccumulator()
            self.items.merge(other.items)


__all__ = ["MAX_PROPERTIES", "ObjectShape", "SchemaAccumulator"]
