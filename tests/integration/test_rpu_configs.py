"""make_rpu_config takes a table name, a ProgrammingTable or a converter, and builds a
table's converter with the sweep's defaults (mse per output channel)."""

import pytest

from aihwkit_slicing import QuantizedSlicedConductanceConverter, bit_sliced, make_rpu_config
from aihwkit_slicing.integration.catalog import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_SCALE,
    NAMED_TABLES,
    make_converter,
)


@pytest.mark.parametrize("spec", ["seed", "3x17lvl-binary", bit_sliced(2, 3)])
def test_a_table_gets_the_sweeps_scaling(spec):
    converter = make_rpu_config(spec).noise_model.g_converter
    assert isinstance(converter, QuantizedSlicedConductanceConverter)
    assert (converter.scale, converter.per_channel) == (DEFAULT_SCALE, DEFAULT_PER_CHANNEL)
    assert (DEFAULT_SCALE, DEFAULT_PER_CHANNEL) == ("mse", True)
    expected = NAMED_TABLES[spec] if isinstance(spec, str) else spec
    assert converter.table == expected


def test_the_scaling_of_a_table_can_be_chosen():
    converter = make_rpu_config("seed", scale="max", per_channel=False).noise_model.g_converter
    assert (converter.scale, converter.per_channel) == ("max", False)


def test_a_converter_is_used_as_it_is():
    given = QuantizedSlicedConductanceConverter.from_table(bit_sliced(2, 3))
    converter = make_rpu_config(given).noise_model.g_converter
    assert (converter.scale, converter.per_channel) == ("max", False)  # aihwkit's convention


def test_make_converter_defaults_to_the_sweeps_scaling_too():
    converter = make_converter("seed")
    assert (converter.scale, converter.per_channel) == ("mse", True)


def test_an_unknown_table_is_named():
    with pytest.raises(ValueError, match="unknown table 'nope'; known tables: aihwkit-1pair"):
        make_rpu_config("nope")
