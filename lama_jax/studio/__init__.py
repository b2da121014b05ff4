"""The layout studio: draw boxes in the browser and watch LAMA build the image.

  python -m lama_jax.studio --model runs/demo

`session.py` holds a page's layout and its objects' noise draws, `engine.py` the loaded generator
(z draws, generation, pictures), `canvas.py` the canvas's boxes, `app.py` the page's handlers,
`page.py` its layout and serving, `downloads.py` what Save writes.
"""
