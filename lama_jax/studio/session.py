"""One page's layout: its objects, each with a stable id and its own noise draw, and the canvas map.

A `Session` is plain data (it lives in a gradio `State`, one per browser tab) and never changes in
place: every edit returns a new one, so a rejected edit leaves the old one as it was. An object's z
is a function of (seed, truncation, object id, how often it was resampled), drawn by the engine; the
id survives moves, resizes and relabels, so moving one box leaves every other object's z alone.
"""
import dataclasses
from typing import Any, Sequence

from lama_jax.studio import canvas as canvas_lib

DEFAULT_NAME = 'studio'


@dataclasses.dataclass(frozen=True)
class StudioObject:
  """One object of the layout.

  Attributes:
    uid: the object's id in this session (its z slot); never reused.
    category: the category name.
    box: normalised (x, y, w, h).
    draws: how often its z was resampled (0: the seed's own draw).
  """
  uid: int
  category: str
  box: tuple[float, float, float, float]
  draws: int = 0


@dataclasses.dataclass(frozen=True)
class Session:
  """A layout being edited.

  Attributes:
    name: the layout's name (file names and the saved JSON).
    objects: the objects in layout order (the order of the saved JSON).
    seed: seeds every z draw and the noise-injection maps.
    truncation: z entries beyond ±truncation are redrawn once; 0 draws plain N(0, 1).
    image_draws: how often the image z was resampled.
    next_uid: the id the next new object gets.
    canvas_boxes: the boxes the canvas showed last, in its order (boxes still without a category
      too), and canvas_uids their object ids.
  """
  name: str = DEFAULT_NAME
  objects: tuple[StudioObject, ...] = ()
  seed: int = 0
  truncation: float = 2.0
  image_draws: int = 0
  next_uid: int = 0
  canvas_boxes: tuple[canvas_lib.CanvasBox, ...] = ()
  canvas_uids: tuple[int, ...] = ()

  @property
  def pending(self) -> int:
    """Boxes on the canvas that have no category yet (their dialog is open)."""
    return sum(1 for b in self.canvas_boxes if not b.label)

  @property
  def fresh_draws(self) -> bool:
    """No z was resampled: `sample --fix_z --seed SEED` on the saved layout gives this picture."""
    return self.image_draws == 0 and all(
        o.draws == 0 and o.uid == i for i, o in enumerate(self.objects))

  def layout_json(self) -> dict[str, Any]:
    """The layout in the format `python -m lama_jax.sample --layouts` reads."""
    return {'name': self.name, 'objects': [
        {'category': o.category, 'bbox': [round(float(v), 6) for v in o.box]}
        for o in self.objects]}

  def index_of(self, uid: int) -> int:
    for i, o in enumerate(self.objects):
      if o.uid == uid:
        return i
    raise KeyError(f'no object with id {uid}')

  def with_objects(self, objects: Sequence[StudioObject], **changes) -> 'Session':
    """A session with these objects, the canvas map redrawn from them (fresh canvas)."""
    objects = tuple(objects)
    boxes = tuple(canvas_lib.from_normalised(o.category, o.box) for o in reversed(objects))
    uids = tuple(o.uid for o in reversed(objects))
    return dataclasses.replace(self, objects=objects, canvas_boxes=boxes, canvas_uids=uids,
                               **changes)

  def loaded(self, name: str, items: Sequence[tuple[str, Sequence[float]]]) -> 'Session':
    """A new layout (a loaded file or an example): ids 0..n-1, fresh draws, the seed kept."""
    objects = [StudioObject(i, c, tuple(float(v) for v in b)) for i, (c, b) in enumerate(items)]
    return self.with_objects(objects, name=name, image_draws=0, next_uid=len(objects))

  def apply_canvas(self, boxes: Sequence[canvas_lib.CanvasBox]) -> 'Session':
    """The session after the canvas reported `boxes` (not validated: see the engine).

    Boxes the canvas moved by its rounding only keep their exact layout box; boxes without a
    category yet get an id (kept when they get one) but are not objects.
    """
    matches = canvas_lib.match(self.canvas_boxes, boxes)
    next_uid, uids = self.next_uid, []
    for m in matches:
      if m is None:
        uids.append(next_uid)
        next_uid += 1
      else:
        uids.append(self.canvas_uids[m])
    old_box = {self.canvas_uids[m]: self.canvas_boxes[m] for m in matches if m is not None}
    reported = {uid: box for uid, box in zip(uids, boxes) if box.label}
    objects = []
    for o in self.objects:  # kept objects keep their place in the layout
      if o.uid in reported:
        box = reported.pop(o.uid)
        same = box.close_to(old_box[o.uid]) if o.uid in old_box else False
        objects.append(o if same else dataclasses.replace(
            o, category=box.label, box=box.normalised()))
    for uid in sorted(reported):  # then the new ones, in the order they were drawn
      objects.append(StudioObject(uid, reported[uid].label, reported[uid].normalised()))
    return dataclasses.replace(self, objects=tuple(objects), next_uid=next_uid,
                               canvas_boxes=tuple(boxes), canvas_uids=tuple(uids))

  def with_category(self, uid: int, category: str) -> 'Session':
    objects = [dataclasses.replace(o, category=category) if o.uid == uid else o
               for o in self.objects]
    return self.with_objects(objects)

  def without(self, uid: int) -> 'Session':
    return self.with_objects([o for o in self.objects if o.uid != uid])

  def resampled(self, uid: int | None = None) -> 'Session':
    """A new z for object `uid`, or for the image when `uid` is None."""
    if uid is None:
      return dataclasses.replace(self, image_draws=self.image_draws + 1)
    self.index_of(uid)
    return dataclasses.replace(self, objects=tuple(
        dataclasses.replace(o, draws=o.draws + 1) if o.uid == uid else o for o in self.objects))

  def reseeded(self, seed: int) -> 'Session':
    """Everything redrawn from a new seed: every draw count back to 0."""
    return dataclasses.replace(self, seed=int(seed), image_draws=0, objects=tuple(
        dataclasses.replace(o, draws=0) for o in self.objects))
