"""Knowledge distillation as extensions of :func:`workbench.fit`: one teacher or an ensemble, MEAL V2's
discriminator on the outputs, a student that starts from trained weights, teacher outputs cached.

Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network*, 2015
(https://arxiv.org/abs/1503.02531); Shen & Savvides, *MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1
Accuracy on ImageNet without Tricks*, 2020 (https://arxiv.org/abs/2009.08453).

The student minimizes::

    (1 - alpha) * CE(student(x), y)  +  alpha * T^2 * KL( p_T(x) || softmax(student(x) / T) )

where the target ``p_T`` is one teacher's ``softmax(teacher(x) / T)`` or, for an ensemble of ``K``
teachers, the mean of their probabilities (MEAL V2 eq. 1)::

    p_T(x) = 1/K sum_k softmax(teacher_k(x) / T)

The ``T^2`` keeps the soft term's gradient the same size as the temperature changes: the gradient of
``T^2 KL`` with respect to the student's logits is ``T (softmax(s / T) - p_T)`` per example (divided
by the batch size for the mean). MEAL V2 trains with the soft term alone (``alpha=1``, ``T=1``: no
one-hot labels), starts the student from trained weights (:class:`StartFrom`) and adds a
discriminator on the final outputs (:class:`Discriminator`).

>>> teachers = [wb.train_model("resnet32", train, seed=s).model for s in (0, 1, 2)]       # doctest: +SKIP
>>> plain = wb.train_model("resnet20", train, seed=0).model                               # doctest: +SKIP
>>> wb.fit(wb.create_model("resnet20"), train, test, task=Distillation(teachers, temperature=1, alpha=1),
...        algorithms=[StartFrom(plain), Discriminator()])                                 # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, Loader
from ..data.dataset import to_uint8
from ..train import Algorithm, Task, data_fingerprint, load_state_checked, model_fingerprint
from ..train.tasks import check_data_fits_model, check_image_batch, classification_loss

__all__ = ["Distillation", "distillation_loss", "soft_target_loss", "ensemble_soft_target", "ensemble_accuracy",
           "Discriminator", "StartFrom", "CACHE_MODES"]

CACHE_MODES = (False, True, "fallback")


def ensemble_soft_target(teacher_logits: torch.Tensor | Sequence[torch.Tensor], temperature: float = 1.0
                         ) -> torch.Tensor:
    """The mean of the members' probabilities ``1/K sum_k softmax(t_k / T)`` (MEAL V2 eq. 1), float32 ``[B, C]``.

    Args:
        teacher_logits: ``[B, C]`` (one teacher), ``[B, C, K]`` (``K`` members, the workbench's packed
            layout) or a list of ``K`` tensors ``[B, C]``.
    """
    t = torch.stack(list(teacher_logits), dim=2) if isinstance(teacher_logits, (list, tuple)) else teacher_logits
    if t.ndim not in (2, 3):
        raise ValueError(f"teacher logits must be [batch, classes] or [batch, classes, members], got {list(t.shape)}")
    p = F.softmax(t.float() / temperature, dim=1)
    return p if p.ndim == 2 else p.mean(2)


def soft_target_loss(student_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 KL(target || softmax(s / T))`` for target probabilities ``[B, C]``, the batch mean (float32).

    With ``T = 1`` and a one-hot target it is the cross-entropy; zero target entries add nothing.
    """
    if target.shape != student_logits.shape:
        raise ValueError(f"the target has shape {list(target.shape)} but the student's logits {list(student_logits.shape)}: "
                         "the student and its teachers must predict the same classes")
    p = target.float()
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    return temperature ** 2 * (torch.xlogy(p, p) - p * log_q).sum(1).mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
                      ) -> torch.Tensor:
    """``T^2 KL(softmax(t / T) || softmax(s / T))``, the batch mean (float32); for an ensemble's logits
    ``[B, C, K]`` the target is :func:`ensemble_soft_target`."""
    if teacher_logits.ndim == 3:
        return soft_target_loss(student_logits, ensemble_soft_target(teacher_logits, temperature), temperature)
    _same_classes(student_logits, teacher_logits)
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return t * t * F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")


def _same_classes(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"the student gives logits of shape {list(student.shape)} but the teachers "
                         f"{list(teacher.shape[:2])} per member: the student and its teachers must predict the same "
                         "classes (create them with the same num_classes)")


def _as_teachers(teacher: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    teachers = list(teacher) if isinstance(teacher, (list, tuple, nn.ModuleList)) else [teacher]
    if not teachers:
        raise ValueError("give at least one teacher")
    for i, t in enumerate(teachers):
        if not isinstance(t, nn.Module):
            raise TypeError(f"teacher {i} must be an nn.Module (a trained network), got {type(t).__name__}")
    counts = {i: getattr(t, "num_classes", None) for i, t in enumerate(teachers)}
    known = {i: n for i, n in counts.items() if n is not None}
    if len(set(known.values())) > 1:
        seen = ", ".join(f"teacher {i}: {n}" for i, n in known.items())
        raise ValueError(f"the teachers predict different numbers of classes ({seen}); an ensemble's probabilities "
                         "are averaged class by class, so every teacher must predict the same classes")
    return teachers


@torch.no_grad()
def _run(models: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The models' logits ``[B, C]`` (one) or ``[B, C, K]``, each in eval mode (its flag restored)."""
    out = []
    for m in models:
        was = m.training
        m.eval()
        try:
            out.append(m(x))
        finally:
            m.train(was)
    return out[0] if len(out) == 1 else torch.stack(out, dim=2)


def _pixel_keys(images: torch.Tensor, weights: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """An int64 key per uint8 image: a random linear hash of its pixels (wrapping int64 arithmetic)."""
    flat = images.reshape(len(images), -1)
    return torch.cat([(flat[i:i + chunk].long() * weights).sum(1) for i in range(0, len(flat), chunk)])


class _LogitTable:
    """The teachers' logits for every image of one dataset and its mirror image, found by the image's pixels
    (exact: a key narrows the search, the pixels are then compared)."""

    def __init__(self, data: ImageDataset, teachers: Sequence[nn.Module], device: torch.device, channels_last: bool):
        images = data.images.to(device)
        self.images, self.mean, self.std = torch.cat([images, images.flip(3)]), data.mean, data.std  # [2N, C, H, W]
        g = torch.Generator().manual_seed(0)
        self.weights = torch.randint(0, 2 ** 62, (self.images[0].numel(),), generator=g).to(device)
        self.keys, self.order = _pixel_keys(self.images, self.weights).sort()
        views = dataclasses.replace(data, images=self.images, labels=torch.cat([data.labels, data.labels]).to(device))
        chunks = [_run(teachers, x) for x, _ in Loader(views, batch_size=500, shuffle=False, device=device,
                                                         channels_last=channels_last)]
        self.logits = torch.cat(chunks)  # [2N, C] or [2N, C, K]

    def lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(found [B] bool, logits of the found rows)`` for normalized float images ``x``."""
        if tuple(x.shape[1:]) != tuple(self.images.shape[1:]):
            return torch.zeros(len(x), dtype=torch.bool, device=x.device), self.logits[:0]
        u8 = to_uint8(x, self.mean, self.std)
        keys = _pixel_keys(u8, self.weights)
        pos = torch.searchsorted(self.keys, keys).clamp_max(len(self.keys) - 1)
        idx = self.order[pos]
        found = (self.keys[pos] == keys) & (self.images[idx] == u8).reshape(len(x), -1).all(1)
        return found, self.logits[idx[found]]


class Distillation(Task):
    """A student learns from frozen teachers' softened outputs and the labels.

    Args:
        teacher: the trained teacher, or a list of teachers (an ensemble: the target is the mean of
            their probabilities, MEAL V2 eq. 1). Kept in eval mode without gradients; moved to the device.
        temperature: ``T`` of the softmax of the student and every teacher in the soft term.
        alpha: weight of the soft term; ``1 - alpha`` weighs the cross-entropy on the labels (MEAL V2:
            ``alpha=1``, no labels).
        cache_logits: ``False`` runs the teachers on every batch. ``True`` runs them once on every image of
            the training and test sets and on its mirror image when ``fit`` starts, and looks each batch's
            images up by their pixels: right when the only augmentation is a horizontal flip
            (``fit(augment=None)`` or ``augment="flip"``), so a batch with an image the teachers have not
            seen (a random crop) raises a ValueError. ``"fallback"`` runs the teachers on such images and
            takes the others from the cache; the history logs ``cache_hit``.

    The history gains ``train_kl`` (the soft term) and ``train_agree`` (how often the student's top
    class is the teachers' top class); the test set reports the student's loss, accuracy and agreement.
    ``teacher_images`` counts the images the teachers have run on (the cost caching saves).
    """

    metric_names = ("loss", "acc", "kl", "agree")

    def __init__(self, teacher: nn.Module | Sequence[nn.Module], temperature: float = 4.0, alpha: float = 0.9,
                 cache_logits: bool | str = False):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha weighs the soft term and must be in [0, 1], got {alpha}")
        if not any(cache_logits is m or cache_logits == m and isinstance(m, str) for m in CACHE_MODES):
            raise ValueError(f"cache_logits must be one of {CACHE_MODES}, got {cache_logits!r}")
        self.teachers = _as_teachers(teacher)
        self.teacher = self.teachers[0] if len(self.teachers) == 1 else nn.ModuleList(self.teachers)
        self.temperature, self.alpha, self.cache_logits = float(temperature), float(alpha), cache_logits
        for t in self.teachers:
            for p in t.parameters():
                p.requires_grad_(False)
        self.teacher_images = 0
        self._seen: list[ImageDataset] = []
        self._tables: dict[str, _LogitTable] = {}

    def config(self) -> dict[str, Any]:
        who = ({"teacher": model_fingerprint(self.teachers[0])} if len(self.teachers) == 1 else
               {"teachers": [model_fingerprint(t) for t in self.teachers]})
        cfg = {"name": "Distillation", **who, "temperature": self.temperature, "alpha": self.alpha}
        return {**cfg, "cache_logits": self.cache_logits} if self.cache_logits else cfg

    def setup(self, model: nn.Module, device: torch.device) -> None:
        for t in self.teachers:
            t.to(device).eval()
        if self.cache_logits:
            channels_last = device.type in ("cpu", "cuda") and any(
                isinstance(m, nn.Conv2d) for t in self.teachers for m in t.modules())
            for data in self._seen:
                key = f"{data_fingerprint(data)}:{tuple(data.mean)}:{tuple(data.std)}"
                if key not in self._tables:
                    self._tables[key] = _LogitTable(data, self.teachers, device, channels_last)
                    self.teacher_images += 2 * len(data)
        self._seen = []

    def check_data(self, model: nn.Module, dataset: Any) -> None:
        check_data_fits_model(model, dataset)
        for i, t in enumerate(self.teachers):
            try:
                check_data_fits_model(t, dataset)
            except ValueError as e:
                raise ValueError(f"teacher {i}: {e}") from None
        n_student, n_teacher = getattr(model, "num_classes", None), getattr(self.teachers[0], "num_classes", None)
        if n_student is not None and n_teacher is not None and n_student != n_teacher:
            raise ValueError(f"the student predicts {n_student} classes but the teachers {n_teacher}: a student learns "
                             f"the teachers' probabilities class by class; create it with num_classes={n_teacher}")
        if self.cache_logits and isinstance(dataset, ImageDataset):
            self._seen.append(dataset)

    def check_batch(self, batch: Any) -> None:
        check_image_batch(self.name, batch)

    def teacher_logits(self, x: torch.Tensor, state: Any = None) -> torch.Tensor:
        """The teachers' logits ``[B, C]`` (one teacher) or ``[B, C, K]``, from the cache where it holds them."""
        if not self._tables:
            self.teacher_images += len(x)
            return _run(self.teachers, x)
        found, rows = torch.zeros(len(x), dtype=torch.bool, device=x.device), None
        for table in self._tables.values():
            hit, got = table.lookup(x)
            new = hit & ~found
            if rows is None:
                rows = got.new_empty((len(x), *got.shape[1:]))
            rows[new] = got[new[hit]]
            found |= new
            if bool(found.all()):
                break
        missing = int((~found).sum())
        if missing and self.cache_logits is True:
            raise ValueError(f"cache_logits=True looks the teachers' outputs up by the image's pixels, and {missing} "
                             f"of the {len(x)} images of this batch are not among the images they ran on: the images "
                             "are augmented (fit's augment=). Train with augment=None or 'flip' (the cache holds mirror "
                             "images too), or pass cache_logits='fallback' to run the teachers on the images the "
                             "cache does not hold, or cache_logits=False")
        if missing:
            self.teacher_images += missing
            rows[~found] = _run(self.teachers, x[~found]).to(rows.dtype)
        if state is not None and self.cache_logits == "fallback":
            state.logs["cache_hit"] = 1 - missing / len(x)
        return rows

    def forward(self, model: nn.Module, batch: Any, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0]
        return model(x), self.teacher_logits(x, state)

    def parts(self, outputs, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The hard term (cross-entropy on labels) and the soft term, both batch means."""
        student, teacher = outputs
        return classification_loss(student, batch[1]), distillation_loss(student, teacher, self.temperature)

    def loss(self, outputs, batch, state: Any = None) -> torch.Tensor:
        hard, soft = self.parts(outputs, batch)
        return (1 - self.alpha) * hard + self.alpha * soft

    def metrics(self, outputs, batch, loss) -> tuple[dict[str, torch.Tensor], int]:
        student, teacher = (o.detach() for o in outputs)
        n = len(batch[1])
        _, soft = self.parts((student, teacher), batch)
        top = student.argmax(1)
        teacher_top = (teacher if teacher.ndim == 2 else ensemble_soft_target(teacher)).argmax(1)
        return {"loss": loss.detach().double() * n, "acc": (top == batch[1]).sum().double(),
                "kl": soft.double() * n, "agree": (top == teacher_top).sum().double()}, n


@torch.no_grad()
def ensemble_accuracy(models: Sequence[nn.Module], data: ImageDataset, batch_size: int = 1000,
                      device: torch.device | str | None = None) -> dict[str, Any]:
    """Accuracy of the mean of the members' probabilities on ``data``, and of each member.

    Returns:
        ``{"acc": float, "nll": float (of the mean probabilities), "members": [acc per member], "n": int}``.
    """
    models = _as_teachers(models)
    if device is None:
        p = next(models[0].parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    for m in models:
        check_data_fits_model(m, data)
    hits, member_hits, nll, n = 0, torch.zeros(len(models), dtype=torch.float64), 0.0, 0
    for x, y in Loader(data, batch_size=batch_size, shuffle=False, device=device):
        logits = _run(models, x)
        logits = logits[..., None] if logits.ndim == 2 else logits   # [B, C, K]
        p = ensemble_soft_target(logits)
        hits += int((p.argmax(1) == y).sum())
        member_hits += (logits.argmax(1) == y[:, None]).sum(0).double().cpu()
        nll -= float(p.gather(1, y[:, None]).clamp_min(1e-12).log().sum())
        n += len(y)
    return {"acc": hits / n, "nll": nll / n, "members": (member_hits / n).tolist(), "n": n}


class StartFrom(Algorithm):
    """The run starts from trained weights (MEAL V2: a good initialization of the student is critical).

    At ``init`` the model takes ``weights``' state (parameters and buffers); a resumed run then takes the
    checkpoint's. The configuration records the weights' fingerprint, so ``train_model`` keys its cache on them.

    Args:
        weights: a model of the same architecture (``wb.train_model(...).model``).
    """

    def __init__(self, weights: nn.Module):
        if not isinstance(weights, nn.Module):
            raise TypeError(f"StartFrom takes a trained model (nn.Module), got {type(weights).__name__}")
        super().__init__()
        self.state = {k: v.detach().cpu().clone() for k, v in weights.state_dict().items()}
        self.fingerprint = model_fingerprint(weights)

    def config(self) -> dict[str, Any]:
        return {"name": "StartFrom", "weights": self.fingerprint}

    def on_init(self, state) -> None:
        load_state_checked(state.model, self.state, "StartFrom weights")


class Discriminator(Algorithm):
    """MEAL V2's discriminator: a small MLP on the output probabilities that tells the teachers' (label 1)
    from the student's (label 0), trained adversarially alongside the student with its own optimizer.

    At ``after_loss`` the student's loss gains ``weight * BCE(D(p_s), 1)`` (the student tries to pass for
    the teachers; the gradient reaches the student only); at ``after_backward`` of the step's first pass
    the discriminator takes one step of its own on ``BCE(D(p_t), 1) + BCE(D(p_s), 0)`` with the batch's
    detached probabilities (MEAL V2 eq. 3: a sigmoid and binary cross-entropy on a few fully connected
    layers). ``p_s = softmax(student logits)``, ``p_t`` the teachers' mean probabilities, both at
    temperature 1. The task's outputs must be ``(student logits, teacher logits)``, as
    :class:`Distillation` gives them. Its weights and optimizer state are checkpointed, so a resumed
    run ends bitwise equal. The history gains ``adv`` (the student's term), ``d_loss`` and ``d_acc``.

    MEAL V2's released code differs in two details: the discriminator reads logits, not probabilities,
    and student and discriminator minimize the same discriminator loss with one optimizer.

    Args:
        weight: weight of the student's adversarial term (MEAL V2 adds it with weight 1).
        hidden: widths of the hidden layers (ReLU); the output is one logit.
        lr, betas: the discriminator's Adam optimizer (constant learning rate).
        seed: its initialization.
        num_classes: the width of its input; default the model's ``num_classes``.
    """

    def __init__(self, weight: float = 1.0, hidden: Sequence[int] = (64, 64), lr: float = 1e-3,
                 betas: tuple[float, float] = (0.5, 0.999), seed: int = 0, num_classes: int | None = None):
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must list at least one positive layer width, got {hidden!r}")
        super().__init__(weight=weight, hidden=[int(h) for h in hidden], lr=lr, betas=list(betas), seed=seed)
        self.weight, self.hidden, self.lr, self.betas, self.seed = weight, tuple(int(h) for h in hidden), lr, betas, seed
        self.num_classes = num_classes
        self.net: nn.Sequential | None = None
        self.opt: torch.optim.Optimizer | None = None
        self._pair: tuple[torch.Tensor, torch.Tensor] | None = None

    def build(self, num_classes: int, device: torch.device | str = "cpu") -> nn.Sequential:
        """The MLP ``num_classes -> hidden... -> 1``, initialized from ``seed`` (PyTorch's default ranges)."""
        widths = [num_classes, *self.hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
        net = nn.Sequential(*layers)
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    bound = m.in_features ** -0.5
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
        return net.to(device)

    def on_init(self, state) -> None:
        n = self.num_classes or getattr(state.model, "num_classes", None)
        if n is None:
            raise ValueError(f"Discriminator cannot tell how many classes {type(state.model).__name__} predicts; "
                             "pass Discriminator(num_classes=...)")
        self.net = self.build(int(n), state.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=tuple(self.betas))

    def _probabilities(self, outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2 and all(
                isinstance(o, torch.Tensor) for o in outputs)):
            raise TypeError("Discriminator needs a task whose outputs are (student logits, teacher logits), such as "
                            f"wb.transfer.Distillation; got {type(outputs).__name__}")
        student, teacher = outputs
        _same_classes(student, teacher)
        return F.softmax(student.float(), dim=1), ensemble_soft_target(teacher.detach())

    def on_after_loss(self, state) -> None:
        p_s, p_t = self._probabilities(state.outputs)
        frozen = {k: v.detach() for k, v in self.net.named_parameters()}
        fake = torch.func.functional_call(self.net, frozen, (p_s,)).squeeze(1)  # [B]: only the student learns here
        adv = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        state.loss = state.loss + self.weight * adv
        state.logs["adv"] = adv.detach()
        if state.pass_index == 0:
            self._pair = (p_s.detach(), p_t)

    def on_after_backward(self, state) -> None:
        if state.pass_index != 0 or self._pair is None:
            return
        p_s, p_t = self._pair
        self._pair = None
        target = torch.cat([torch.ones(len(p_t), device=p_t.device), torch.zeros(len(p_s), device=p_s.device)])
        with torch.enable_grad():
            logits = self.net(torch.cat([p_t, p_s])).squeeze(1)  # [2B]: the teachers' first
            d_loss = F.binary_cross_entropy_with_logits(logits, target)
            self.opt.zero_grad(set_to_none=True)
            d_loss.backward()
        self.opt.step()
        state.logs["d_loss"] = d_loss.detach()
        state.logs["d_acc"] = ((logits.detach() > 0).float() == target).float().mean()

    def state_dict(self) -> dict[str, Any]:
        if self.net is None:
            return {}
        out: dict[str, Any] = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        for i, st in self.opt.state_dict()["state"].items():
            for k, v in st.items():
                out[f"opt.{i}.{k}"] = v.detach().clone() if isinstance(v, torch.Tensor) else v
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.net is None:
            raise RuntimeError("the discriminator is built at fit's init event, before a checkpoint is loaded")
        net = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        load_state_checked(self.net, net, "checkpoint's discriminator")
        opt_state: dict[int, dict[str, Any]] = {}
        for k, v in state.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = v
        self.opt.load_state_dict({"state": dict(sorted(opt_state.items())),
                                  "param_groups": self.opt.state_dict()["param_groups"]})
