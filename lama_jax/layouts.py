"""The layout file format, under its public name; the code lives in `lama_jax.inference.layouts`."""
from lama_jax.inference.layouts import (PAD_BOX, PAD_LABEL, Layout, LayoutError, check_arrays,
                                        check_box, decode_layouts, load_layouts, parse_layouts,
                                        read_layout_file, resolve_category, stack_layouts)

__all__ = ['PAD_BOX', 'PAD_LABEL', 'Layout', 'LayoutError', 'check_arrays', 'check_box',
           'decode_layouts', 'load_layouts', 'parse_layouts', 'read_layout_file',
           'resolve_category', 'stack_layouts']
