"""Category vocabularies: id <-> name maps for COCO-Stuff, Visual Genome and shapes.

A vocabulary file is JSON:
`{"dataset": "coco_stuff", "num_classes": 184, "id_to_name": {"0": "__image__", ...}}`.
Id 0 is always `__image__`, the padding class. The shipped files live in `data/vocab/`; Visual Genome's
is written next to the prepared TFRecords by `prepare` (it comes from the user's sg2im `vocab.json`).
"""
import dataclasses
import json
from pathlib import Path
from typing import Any

from lama_jax import files

VOCAB_DIR = Path(__file__).resolve().parents[2] / 'data' / 'vocab'
KNOWN_DATASETS = ('coco_stuff', 'visual_genome', 'shapes')


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """A dataset's categories.

  Attributes:
    dataset: the dataset name, e.g. 'coco_stuff'.
    num_classes: number of label ids, including 0 (`__image__`); ids run 0..num_classes-1.
    id_to_name: label id -> category name.
  """
  dataset: str
  num_classes: int
  id_to_name: dict[int, str]

  def __post_init__(self):
    if self.id_to_name.get(0) != '__image__':
      raise ValueError(f'Vocabulary {self.dataset!r}: id 0 must be "__image__", '
                       f'got {self.id_to_name.get(0)!r}.')
    bad = [i for i in self.id_to_name if not 0 <= i < self.num_classes]
    if bad:
      raise ValueError(f'Vocabulary {self.dataset!r}: ids {bad} outside [0, {self.num_classes}).')

  @property
  def name_to_id(self) -> dict[str, int]:
    return {name: i for i, name in self.id_to_name.items()}

  def to_json(self) -> dict[str, Any]:
    return {'dataset': self.dataset, 'num_classes': self.num_classes,
            'id_to_name': {str(i): n for i, n in sorted(self.id_to_name.items())}}

  @classmethod
  def numbered(cls, dataset: str, num_classes: int) -> 'Vocabulary':
    """A vocabulary whose category names are their ids ('1', '2', ...), for unnamed data."""
    return cls(dataset, num_classes, {0: '__image__', **{i: str(i) for i in range(1, num_classes)}})

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> 'Vocabulary':
    try:
      return cls(dataset=str(data['dataset']), num_classes=int(data['num_classes']),
                 id_to_name={int(i): str(n) for i, n in data['id_to_name'].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # id_to_name not an object
      raise ValueError(f'Not a vocabulary (need dataset, num_classes, id_to_name): {e}') from e


def save_vocabulary(vocab: Vocabulary, path: str) -> None:
  """Writes `vocab` as JSON to `path` (atomically: temp file, then rename)."""
  files.write_json(path, vocab.to_json())


def dataset_vocabulary_name(dataset: str, data_dir: str) -> str:
  """What `load_vocabulary` takes for a prepared dataset's own vocabulary (Visual Genome's is the
  file `prepare` wrote into the data dir)."""
  if dataset == 'visual_genome':
    return str(Path(data_dir) / 'visual_genome' / 'vocab.json')
  return dataset


def load_vocabulary(name_or_path: str) -> Vocabulary:
  """Loads a vocabulary by dataset name or from a JSON file.

  Args:
    name_or_path: 'coco_stuff', 'visual_genome', 'shapes' (read from `data/vocab/NAME.json`), or the
      path of a vocabulary JSON file (e.g. `DATA_DIR/visual_genome/vocab.json` written by prepare).

  Returns:
    The vocabulary.

  Raises:
    FileNotFoundError: no such file (for visual_genome, when no shipped copy exists).
    ValueError: the file is not a vocabulary.
  """
  if name_or_path in KNOWN_DATASETS:
    path = VOCAB_DIR / f'{name_or_path}.json'
    if not path.exists():
      hint = (' Visual Genome\'s vocabulary comes from your sg2im vocab.json: pass the vocab.json '
              'that `prepare` wrote next to the TFRecords (DATA_DIR/visual_genome/vocab.json).'
              if name_or_path == 'visual_genome' else '')
      raise FileNotFoundError(f'No vocabulary file {path}.{hint}')
  else:
    path = Path(name_or_path)
    if not path.exists():
      raise FileNotFoundError(f'Vocabulary {name_or_path!r} is neither one of {KNOWN_DATASETS} '
                              'nor an existing file.')
  with open(path) as f:
    try:
      data = json.load(f)
    except ValueError as e:  # JSONDecodeError; UnicodeDecodeError for bytes that are not text
      raise ValueError(f'Vocabulary file {path} is not valid JSON: {e}') from e
  try:
    return Vocabulary.from_json(data)
  except ValueError as e:
    raise ValueError(f'Vocabulary file {path}: {e}') from e
