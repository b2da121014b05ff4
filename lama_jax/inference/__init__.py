"""Inference: LayoutGenerator (the one sampling path), layout files, generator directories, export."""
