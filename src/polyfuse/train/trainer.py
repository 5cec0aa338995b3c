"""The training loop: data -> model -> AdamW with per-modality rates -> artifact.

Mixed precision, gradient accumulation, clipping, modality dropout,
per-modality auxiliary losses with stall warnings, early stopping, seeded
determinism, resumable checkpoints, progress bars and a JSONL metrics log.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from polyfuse.artifacts.classifier import Artifact, trainable_state_dict
from polyfuse.artifacts.format import ManifestLineage, manifest_lineage
from polyfuse.core.config import Config
from polyfuse.core.device import (
    autocast,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    use_bf16,
)
from polyfuse.core.errors import ConfigError, PolyfuseError, TrainingError
from polyfuse.core.progress import bar
from polyfuse.data.dataset import BadRow, Batch, Collator, MultimodalDataset
from polyfuse.data.features import attach_frozen_features
from polyfuse.data.manifest import Manifest
from polyfuse.data.sampler import LengthGroupedBatchSampler
from polyfuse.encoders.cache import default_cache_dir
from polyfuse.evaluation.metrics import headline, task_metrics
from polyfuse.heads.tasks import TASK_CLASSES, Task
from polyfuse.inference.collect import Collected, collect
from polyfuse.modalities import ModalityContract
from polyfuse.modalities.quality import QualityGate, build_gates
from polyfuse.models.build import build_contracts, build_model
from polyfuse.models.multimodal import ModelOutput, MultimodalModel
from polyfuse.release.tracking import NoTracker, Tracker, tracked
from polyfuse.train.distributed import (
    Collective,
    DDPOptions,
    ShardedBatchSampler,
    World,
    place,
    process_group,
    world_from_env,
)
from polyfuse.train.dropout import modality_dropout
from polyfuse.train.monitor import StallMonitor
from polyfuse.train.optim import make_optimizer
from polyfuse.train.substitute import NonSignalPool

if TYPE_CHECKING:
    from polyfuse.inference.predict import Predictor

log = logging.getLogger("polyfuse.train")


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        artifact: the trained model and its metadata (saved at ``path``).
        path: artifact folder.
        history: one record per epoch (also in ``metrics.jsonl``).
        best_epoch: epoch whose weights were kept.
        metrics: validation metrics of the kept weights.
        bad_rows: rows skipped in training and validation.
        warnings: stall and data warnings raised during the run.
    """

    artifact: Artifact
    path: Path
    history: list[dict[str, Any]]
    best_epoch: int
    metrics: dict[str, Any]
    bad_rows: list[BadRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, float | int | str]:
        """The summary `polyfuse train` prints: best epoch, headline metrics, bad rows."""
        kept = ("accuracy", "macro_f1", "rmse")
        out: dict[str, float | int | str] = {"best_epoch": self.best_epoch}
        out.update({k: self.metrics[k] for k in kept if k in self.metrics})
        out["bad_rows"] = len(self.bad_rows)
        return out


@dataclass
class _State:
    epoch: int = 0
    step: int = 0
    best_score: tuple[float, float] = (float("-inf"), float("-inf"))
    best_epoch: int = 0
    best_state: dict[str, Tensor] | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Verdict(NamedTuple):
    """Rank 0's judgement of an epoch, broadcast to the other ranks."""

    record: dict[str, Any]
    improved: bool
    best_score: tuple[float, float]
    best_metrics: dict[str, Any]


@dataclass
class _Run:
    """Everything one training run mutates, passed around as one object."""

    model: MultimodalModel
    task: Task
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    train_ds: MultimodalDataset
    state: _State = field(default_factory=_State)
    gen: torch.Generator = field(default_factory=torch.Generator)
    monitor: StallMonitor = field(default_factory=StallMonitor)
    noise_rng: np.random.Generator = field(default_factory=np.random.default_rng)
    pools: dict[str, NonSignalPool] = field(default_factory=dict)
    #: what the training forward runs: ``model``, or its DistributedDataParallel wrapper
    net: torch.nn.Module | None = None


class Trainer:
    """Trains a `Config` on manifests and writes an artifact.

    Args:
        config: the run configuration.
        out_dir: artifact folder; also holds ``metrics.jsonl``, ``bad_rows.jsonl``
            and ``checkpoints/``.
        progress: show progress bars (on terminals only).
        resume: continue from ``out_dir/checkpoints/last.pt`` when it exists.
        reference: manifest of the monitoring reference profile written into the artifact
            (single-label classifiers; default: the validation manifest); ``False`` writes none.
        card: write the model card (`polyfuse.release.card`) into the artifact, from a full
            evaluation of the validation manifest (when ``train.card`` is also on).
        tracker: receives each epoch's ``metrics.jsonl`` record (`polyfuse.release.tracking`),
            started and finished by the caller; by default `fit` runs the one
            ``train.tracking`` names itself.
        world: this process in a data-parallel run (`polyfuse.train.distributed`); by
            default read from the launcher's environment (torchrun, ``--nproc``, Ray Train),
            a single process without one. Each rank trains on its shard of the batches
            with the model wrapped in DistributedDataParallel; rank 0 validates and
            broadcasts its decisions, and only rank 0 writes files.
        ddp: data-parallel options (collective timeout, ``find_unused_parameters``).
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        *,
        progress: bool = True,
        resume: bool = False,
        reference: str | Path | bool = True,
        card: bool = True,
        tracker: Tracker | None = None,
        world: World | None = None,
        ddp: DDPOptions | None = None,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.reference = reference
        self.card = card
        self.cfg = config.train
        self.out_dir = Path(out_dir)
        self.world = world or world_from_env()
        self.ddp = ddp or DDPOptions()
        self.progress = progress and self.world.is_main
        self.resume = resume
        self._lineage: tuple[ManifestLineage, ...] = ()
        self.device = place(resolve_device(self.cfg.device), self.world)
        self.sync = Collective(self.world, self.device)
        self.cache_dir = Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_dir()

    # ------------------------------------------------------------------ setup
    def fit(
        self, train: str | Path | Manifest, val: str | Path | Manifest | None = None
    ) -> TrainResult:
        """Train and save the artifact.

        Args:
            train: training manifest (path or parsed).
            val: validation manifest; when omitted, a seeded 10% of ``train`` is held out.
        """
        self._check_task()
        with process_group(self.world, self.device, self.ddp.timeout_s):
            if self.tracker is not None or not self.world.is_main:
                return self._fit(self.tracker or NoTracker(), train, val)
            return self._fit_tracked(train, val)

    def _fit_tracked(
        self, train: str | Path | Manifest, val: str | Path | Manifest | None
    ) -> TrainResult:
        with tracked(self.config, self.out_dir, resume=self.resume) as tracker:
            result = self._fit(tracker, train, val)
            tracker.finish(result.path, result.figures())
        return result

    def _fit(
        self,
        tracker: Tracker,
        train: str | Path | Manifest,
        val: str | Path | Manifest | None,
    ) -> TrainResult:
        seed_everything(self.cfg.seed)
        train_m, val_m = self._manifests(train, val)
        self._lineage = (
            manifest_lineage("train", train_m.path, len(train_m.rows)),
            manifest_lineage("val", val_m.path, len(val_m.rows)),
        )
        task = TASK_CLASSES[self.config.task].fit([r.label for r in train_m.rows])
        contracts = self._fit_contracts(build_contracts(self.config), train_m)
        gates = build_gates({m: c.quality for m, c in self.config.modalities.items()}, contracts)
        pools = self._pools(contracts, train_m.base_dir)
        train_ds, val_ds = (self._dataset(m, contracts, task, gates) for m in (train_m, val_m))
        prior = task.prior_logits(self._targets(train_ds, task))
        model = build_model(self.config, contracts, task, prior).to(self.device)
        log.info(
            "model: %s fusion, %d trainable parameters, device %s, %s precision",
            self.config.model.fusion.name,
            model.trainable_parameters(),
            self.device,
            "bf16" if use_bf16(self.device, self.cfg.precision) else "fp32",
        )
        t0 = time.perf_counter()
        feature_seconds = (
            self._prepare_features_in_turn(model, [train_ds, val_ds])
            if self.cfg.feature_cache
            else 0.0
        )
        loader = self._loader(train_ds, shuffle=True)
        val_loader = self._loader(val_ds, shuffle=False)
        steps = self.cfg.epochs * max(1, -(-len(loader) // self.cfg.grad_accum))
        optimizer, schedule = make_optimizer(model, self.config, steps)
        run = _Run(
            model,
            task,
            optimizer,
            schedule,
            train_ds,
            gen=torch.Generator().manual_seed(self.world.seed(self.cfg.seed + 1)),
            monitor=StallMonitor(self.cfg.stall_epochs, self.cfg.stall_tolerance),
            noise_rng=np.random.default_rng(self.world.seed(self.cfg.seed + 2)),
            pools=pools,
        )
        state = run.state
        if self.world.rank:  # layers' own randomness (dropout) differs per rank
            seed_everything(self.world.seed(self.cfg.seed))
        if self.resume:
            self._restore(run)
        run.net = self._wrap(model, train_ds)
        log_path = self.out_dir / "metrics.jsonl"
        if self.world.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                log_path.unlink(missing_ok=True)
        for epoch in range(state.epoch + 1, self.cfg.epochs + 1):
            loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
            train_stats = self._train_epoch(run, loader, epoch)
            # lengths learned on each rank's shard group the next epochs alike on every rank
            self.sync.max_into(train_ds.lengths)
            warnings = run.monitor.update(train_stats["modality_loss"])
            seconds = (time.perf_counter() - t0, feature_seconds if epoch == 1 else 0.0)
            record, improved = self._judge(run, val_loader, epoch, train_stats, seconds, warnings)
            t0 = time.perf_counter()
            state.warnings.extend(warnings)
            if self.world.is_main:
                self._log(log_path, record)
                tracker.log_epoch(record, epoch)
            state.history.append(record)
            state.epoch = epoch
            self._checkpoint(run)
            if not improved and self.cfg.patience and state.stale >= self.cfg.patience:
                log.info(
                    "early stopping: no %s improvement for %d epochs",
                    self._metric(task),
                    state.stale,
                )
                break
        return self._finish(model, contracts, task, state, train_ds, val_ds)

    def _check_task(self) -> None:
        if self.config.task not in TASK_CLASSES:
            raise ConfigError(
                "task",
                f"'{self.config.task}' is not trained by Trainer",
                hint="contrastive configs train with polyfuse.retrieval.pipeline.train_alignment "
                "(`polyfuse train` picks it)",
            )

    def _manifests(
        self, train: str | Path | Manifest, val: str | Path | Manifest | None
    ) -> tuple[Manifest, Manifest]:
        names = list(self.config.modalities)
        label = self.config.label
        train_m = train if isinstance(train, Manifest) else Manifest.load(train, names, label)
        if not train_m.rows:
            raise TrainingError(f"training manifest {train_m.path} has no rows")
        if val is not None:
            val_m = val if isinstance(val, Manifest) else Manifest.load(val, names, label)
            return train_m, val_m
        gen = torch.Generator().manual_seed(self.cfg.seed)
        perm = torch.randperm(len(train_m.rows), generator=gen).tolist()
        n_val = max(1, len(perm) // 10)
        held = set(perm[:n_val])
        log.info("no validation manifest: holding out %d of %d training rows", n_val, len(perm))
        rows = train_m.rows
        return (
            replace(train_m, rows=[r for i, r in enumerate(rows) if i not in held]),
            replace(train_m, rows=[r for i, r in enumerate(rows) if i in held], problems=[]),
        )

    def _fit_contracts(
        self, contracts: dict[str, ModalityContract], manifest: Manifest
    ) -> dict[str, ModalityContract]:
        """Fit data-dependent contract statistics (e.g. series normalisation) on training rows."""
        out = dict(contracts)
        for m, contract in contracts.items():
            if not contract.needs_fit:
                continue
            objs = []
            for row in manifest.rows[:5000]:
                if m in row.values:
                    try:
                        objs.append(
                            contract.load(row.values[m], field=m, base_dir=manifest.path.parent)
                        )
                    except PolyfuseError:
                        continue
            if not objs:
                raise TrainingError(
                    f"no valid '{m}' inputs in the training manifest to fit the "
                    f"{contract.kind} contract on"
                )
            out[m] = contract.fit(objs)
        return out

    def _pools(
        self, contracts: Mapping[str, ModalityContract], base_dir: Path
    ) -> dict[str, NonSignalPool]:
        """The non-signal inputs of every modality with ``substitute`` configured."""
        return {
            m: NonSignalPool.load(contracts[m], c.substitute, base_dir)
            for m, c in self.config.modalities.items()
            if c.substitute is not None and c.substitute.p > 0
        }

    def _dataset(
        self,
        manifest: Manifest,
        contracts: Mapping[str, ModalityContract],
        task: Task,
        gates: Mapping[str, QualityGate],
    ) -> MultimodalDataset:
        ds = MultimodalDataset(
            manifest,
            contracts,
            task,
            on_bad_row=self.cfg.on_bad_row,
            memory_cache_mb=self.cfg.memory_cache_mb,
            gates=gates,
        )
        ds.raise_on_problems()
        return ds

    def _targets(self, ds: MultimodalDataset, task: Task) -> Tensor:
        targets = []
        for row in ds.rows:
            if row.label is None:
                continue
            try:
                targets.append(task.encode(row.label))
            except PolyfuseError:
                continue
        if not targets:
            raise TrainingError(
                f"no row of {ds.manifest.path} has a usable '{self.config.label}' value"
            )
        return torch.stack(targets)

    def _prepare_features(self, model: MultimodalModel, datasets: list[MultimodalDataset]) -> float:
        """Encode frozen modalities once into the disk cache; returns seconds spent."""
        start = time.perf_counter()
        encoders = {m: model.encoder(m) for m in model.modalities}
        attach_frozen_features(
            encoders,
            datasets,
            cache_dir=self.cache_dir,
            device=self.device,
            batch_size=self.cfg.batch_size,
            progress=self.progress,
        )
        return time.perf_counter() - start

    def _prepare_features_in_turn(
        self, model: MultimodalModel, datasets: list[MultimodalDataset]
    ) -> float:
        """`_prepare_features`, rank 0 first: it fills the shared disk cache, which the other
        ranks then only read (no rank encodes what another already did, no racing writes)."""
        if not self.world.is_main:
            self.sync.barrier()
        seconds = self._prepare_features(model, datasets)
        if self.world.is_main:
            self.sync.barrier()
        return seconds

    def _loader(self, ds: MultimodalDataset, shuffle: bool) -> DataLoader[Any]:
        """Batches of ``ds``; a training loader (``shuffle``) of a data-parallel run yields
        this rank's shard of them."""
        grouped = LengthGroupedBatchSampler(ds.lengths, self.cfg.batch_size, shuffle, self.cfg.seed)
        sampler: LengthGroupedBatchSampler | ShardedBatchSampler = grouped
        if shuffle and self.world.distributed:
            sampler = ShardedBatchSampler(grouped, self.world)
        return DataLoader(
            ds,
            batch_sampler=sampler,
            collate_fn=Collator(ds.contracts),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def _wrap(self, model: MultimodalModel, train_ds: MultimodalDataset) -> torch.nn.Module:
        """The module the training forward calls: ``model`` itself in a single process, else
        ``model`` in DistributedDataParallel (its gradients all-reduced after each backward;
        the model stays unwrapped for validation, checkpoints and the artifact)."""
        if not self.world.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        unused = self.ddp.find_unused
        if unused is None:
            unused = bool(train_ds.gates) or any(
                set(self.config.modalities) - set(row.values) for row in train_ds.rows
            )
        log.info(
            "data parallel: %d processes (%s), %d per batch each, find_unused_parameters=%s",
            self.world.size,
            torch.distributed.get_backend(),
            self.cfg.batch_size,
            unused,
        )
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)

    # ------------------------------------------------------------------ loop
    def _substitute_noise(self, run: _Run, batch: Batch) -> None:
        """Noise and non-signal substitution: replace inputs in place by pure noise
        (``modalities.*.noise``) or by a real non-signal input (``modalities.*.substitute``).

        Only samples with at least one other modality are eligible, so every
        substituted sample still carries evidence for its label. One draw per eligible
        sample picks noise (below ``noise``), non-signal (below ``noise + p``) or neither.
        """
        probs = {
            m: (c.noise, run.pools.get(m))
            for m, c in self.config.modalities.items()
            if c.noise > 0 or m in run.pools
        }
        if not probs:
            return
        count = torch.stack([mb.present for mb in batch.inputs.values()]).sum(0)  # (B,)
        for m, (noise, pool) in probs.items():
            mb = batch.inputs.get(m)
            if mb is None or mb.encoded:
                continue
            contract = run.train_ds.contracts[m]
            rows = mb.present.nonzero().flatten().tolist()  # data row j <-> sample rows[j]
            for j, sample in enumerate(rows):
                if count[sample] < 2:
                    continue
                u = run.noise_rng.random()
                if u < noise:
                    view = contract.sample_view(mb, j)
                    view.copy_(contract.noise(view, run.noise_rng))
                elif pool is not None and u < noise + pool.p:
                    view = contract.sample_view(mb, j)
                    view.copy_(pool.draw(view, run.noise_rng))

    def _train_epoch(self, run: _Run, loader: DataLoader[Any], epoch: int) -> dict[str, Any]:
        model, task = run.model, run.task
        model.train()
        drop = {m: mod.dropout for m, mod in self.config.modalities.items()}
        totals = {"loss": 0.0, "n": 0}
        mod_sum = dict.fromkeys(model.modalities, 0.0)
        mod_n = dict.fromkeys(model.modalities, 0)
        accum = self.cfg.grad_accum
        pending = 0
        run.optimizer.zero_grad(set_to_none=True)
        pbar = bar(
            loader, enabled=self.progress, desc=f"epoch {epoch}/{self.cfg.epochs}", leave=False
        )
        net = run.net or model
        for cpu_batch in pbar:
            if not self.sync.all(cpu_batch.size > 0):  # ranks skip a batch together
                continue
            self._substitute_noise(run, cpu_batch)
            batch = cpu_batch.to(self.device)
            present = _presence(model, batch)
            with autocast(self.device, self.cfg.precision):
                out = net(batch.inputs, batch.size, modality_dropout(present, drop, run.gen))
                loss, fused, per_mod = self._losses(task, out, present, batch)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {float(loss)} at epoch {epoch}",
                    hint="lower train.lr or enable train.clip_norm",
                )
            (loss / accum).backward()
            pending += 1
            if pending == accum:
                self._step(run)
                pending = 0
            totals["loss"] += float(fused.detach()) * batch.size
            totals["n"] += batch.size
            for m, (value, count) in per_mod.items():
                mod_sum[m] += value * count
                mod_n[m] += count
            pbar.set_postfix(loss=f"{totals['loss'] / totals['n']:.4f}")
        if pending:
            self._step(run)
        totals, mod_sum, mod_n = self._sum_over_ranks(totals, mod_sum, mod_n)
        if totals["n"] == 0:
            raise TrainingError(
                "every training row was bad; nothing to train on",
                hint="run `polyfuse validate` on the training manifest",
            )
        return {
            "loss": totals["loss"] / totals["n"],
            "modality_loss": {m: mod_sum[m] / mod_n[m] for m in mod_sum if mod_n[m]},
        }

    def _sum_over_ranks(
        self, totals: dict[str, float], mod_sum: dict[str, float], mod_n: dict[str, int]
    ) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
        """An epoch's loss sums and counts over every rank (the identity in one process)."""
        names = sorted(mod_sum)
        flat = self.sync.sum(
            [totals["loss"], totals["n"], *(mod_sum[m] for m in names), *(mod_n[m] for m in names)]
        )
        k = len(names)
        return (
            {"loss": flat[0], "n": int(flat[1])},
            dict(zip(names, flat[2 : 2 + k], strict=True)),
            {m: int(v) for m, v in zip(names, flat[2 + k :], strict=True)},
        )

    def _losses(
        self, task: Task, out: ModelOutput, available: Mapping[str, Tensor], batch: Batch
    ) -> tuple[Tensor, Tensor, dict[str, tuple[float, int]]]:
        """Fused loss + weighted auxiliary losses (on every sample that has the modality)."""
        if batch.targets is None:
            raise TrainingError("a training batch has no targets")
        fused = task.loss(out.logits, batch.targets).mean()
        total = fused
        per_mod: dict[str, tuple[float, int]] = {}
        for m, mod in self.config.modalities.items():
            rows = available[m]
            count = int(rows.sum())
            if not count:
                continue
            aux = task.loss(out.unimodal_logits[m][rows], batch.targets[rows]).mean()
            per_mod[m] = (float(aux.detach()), count)
            # weight 0 still trains the (detached) auxiliary head for analysis
            total = total + (mod.loss_weight or 1.0) * aux
        return total, fused, per_mod

    def _step(self, run: _Run) -> None:
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in run.model.parameters() if p.requires_grad], self.cfg.clip_norm
            )
        run.optimizer.step()
        run.schedule.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.state.step += 1

    # ------------------------------------------------------------------ bookkeeping
    def _metric(self, task: Task) -> str:
        return task.default_metric() if self.cfg.metric == "auto" else self.cfg.metric

    @staticmethod
    def _score(task: Task, logits: Tensor, targets: Tensor, metric: str) -> tuple[float, float]:
        """Rounded mean loss and ``metric`` of some predictions."""
        loss = float(task.loss(logits, targets).mean())
        value = headline(task_metrics(task, task.probabilities(logits), targets)).get(metric, 0.0)
        return round(loss, 6), round(float(value), 6)

    def _selection_subsets(self) -> list[tuple[str, ...]]:
        """Single-modality subsets a checkpoint is also scored on (``train.select``)."""
        mods = list(self.config.modalities)
        select = self.cfg.select
        if select == "auto":
            dropout = any(m.dropout > 0 for m in self.config.modalities.values())
            select = "subsets" if dropout else "full"
        return [(m,) for m in mods] if select == "subsets" and len(mods) > 1 else []

    def _record(
        self,
        run: _Run,
        epoch: int,
        train_stats: dict[str, Any],
        val: Collected,
        seconds: float,
        feature_seconds: float,
    ) -> dict[str, Any]:
        task = run.task
        record: dict[str, Any] = {"epoch": epoch, "train_loss": round(train_stats["loss"], 6)}
        for m, v in train_stats["modality_loss"].items():
            record[f"train_loss/{m}"] = round(v, 6)
        if len(val) and val.targets is not None:
            targets = val.targets
            record["val_loss"] = round(float(task.loss(val.logits, targets).mean()), 6)
            metrics = headline(task_metrics(task, task.probabilities(val.logits), targets))
            record.update({f"val_{k}": round(v, 6) for k, v in metrics.items() if k != "n"})
            metric = self._metric(task)
            for m in val.modalities:  # auxiliary (unimodal) heads, where the modality exists
                rows = val.present[m]
                if bool(rows.any()):
                    loss, score = self._score(task, val.unimodal[m][rows], targets[rows], metric)
                    record[f"val_loss/{m}"], record[f"val_{metric}/{m}"] = loss, score
            for key, logits in val.subset_logits.items():  # the fusion shown only `key`
                loss, score = self._score(task, logits, targets, metric)
                record[f"val_loss@{key}"], record[f"val_{metric}@{key}"] = loss, score
        record["lr"] = run.schedule.get_last_lr()[-1]
        record["seconds"] = round(seconds, 3)
        if feature_seconds:
            record["feature_seconds"] = round(feature_seconds, 3)
        return record

    def _log(self, path: Path, record: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        parts = [
            f"epoch {record['epoch']}/{self.cfg.epochs}",
            f"train_loss {record['train_loss']:.4f}",
        ]
        for key in ("val_loss", "val_accuracy", "val_macro_f1", "val_rmse"):
            if key in record:
                parts.append(f"{key} {record[key]:.4f}")
        parts.append(f"{record['seconds']:.1f}s")
        log.info("  ".join(parts))

    def _judge(
        self,
        run: _Run,
        val_loader: DataLoader[Any],
        epoch: int,
        train_stats: dict[str, Any],
        seconds: tuple[float, float],
        warnings: list[str],
    ) -> tuple[dict[str, Any], bool]:
        """Validate (rank 0 only), record the epoch and keep the best weights.

        Rank 0 broadcasts its record and verdict, so every rank keeps the same history,
        best epoch and early-stopping count (and the same best weights: DDP keeps the
        ranks' weights identical). Returns the epoch's record and whether it improved.
        """
        state = run.state
        verdict = _Verdict({}, False, state.best_score, {})  # rank 0 fills it in
        if self.world.is_main:
            outputs = collect(
                run.model,
                val_loader,
                self.device,
                self.cfg.precision,
                self.progress,
                desc="validating",
                subsets=self._selection_subsets(),
            )
            record = self._record(run, epoch, train_stats, outputs, *seconds)
            for warning in warnings:
                log.warning(warning)
                record.setdefault("warnings", []).append(warning)
            improved = self._track_best(run, record, outputs, epoch)
            verdict = _Verdict(record, improved, state.best_score, state.best_metrics)
        verdict = self.sync.broadcast(verdict)
        if not self.world.is_main:
            if verdict.improved:
                state.best_score, state.best_epoch, state.stale = verdict.best_score, epoch, 0
                state.best_state = copy.deepcopy(trainable_state_dict(run.model))
                state.best_metrics = verdict.best_metrics
            else:
                state.stale += 1
        return verdict.record, verdict.improved

    def _track_best(self, run: _Run, record: dict[str, Any], val: Collected, epoch: int) -> bool:
        model, task, state = run.model, run.task, run.state
        metric = self._metric(task)
        key = "val_loss" if metric == "loss" else f"val_{metric}"
        if key not in record:
            if len(val):
                raise PolyfuseError(
                    f"train.metric '{metric}' is not computed for task '{task.name}'",
                    hint="use auto, loss, accuracy or macro_f1",
                )
            score = (-record["train_loss"], 0.0)  # no usable validation rows
        else:
            keys = [key] + [f"{key}@{k}" for k in val.subset_logits]
            values = [-record[k] if metric == "loss" else record[k] for k in keys]
            score = (sum(values) / len(values), -record["val_loss"])  # ties: lower loss wins
            record["selection_score"] = round(score[0], 6)
        if score > state.best_score:
            state.best_score, state.best_epoch, state.stale = score, epoch, 0
            state.best_state = copy.deepcopy(trainable_state_dict(model))
            state.best_metrics = {}
            if len(val) and val.targets is not None:
                state.best_metrics = task_metrics(task, task.probabilities(val.logits), val.targets)
            return True
        state.stale += 1
        return False

    def _checkpoint(self, run: _Run) -> None:
        """``checkpoints/last.pt``, written by rank 0 with every rank's random states (the
        model unwrapped, so it reads like a single-process checkpoint)."""
        rngs = self.sync.gather(_rank_rng(run))
        if not self.world.is_main:
            return
        folder = self.out_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "state": {**run.state.__dict__},
            "model": trainable_state_dict(run.model),
            "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(),
            **rngs[0],
            "monitor": run.monitor.state_dict(),
            "config": self.config.to_dict(),
            # lengths learned while loading drive batch grouping: a resumed run needs them
            "train_lengths": list(run.train_ds.lengths),
            "world_size": self.world.size,
        }
        if self.world.distributed:
            payload["ranks"] = rngs
        tmp = folder / "last.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(folder / "last.pt")

    def _restore(self, run: _Run) -> None:
        path = self.out_dir / "checkpoints" / "last.pt"
        if not path.is_file():
            log.info("no checkpoint at %s: starting from scratch", path)
            return
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        if ckpt["config"] != self.config.to_dict():
            raise TrainingError(
                f"{path} was written with a different config",
                hint="resume with the same config, or use a new --out folder",
            )
        size = int(ckpt.get("world_size", 1))
        if size != self.world.size:
            raise TrainingError(
                f"{path} was written by a run of {size} process(es); this one has "
                f"{self.world.size}",
                hint=f"resume with --nproc {size} (the batch shards and the learning-rate "
                "schedule depend on the process count), or use a new --out folder",
            )
        run.model.load_state_dict(ckpt["model"], strict=False)
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.schedule.load_state_dict(ckpt["schedule"])
        for key, value in ckpt["state"].items():
            setattr(run.state, key, value)
        rng = ckpt["ranks"][self.world.rank] if "ranks" in ckpt else ckpt
        set_rng_state(rng["rng"])
        run.gen.set_state(rng["dropout_rng"])
        if "noise_rng" in rng:
            run.noise_rng.bit_generator.state = rng["noise_rng"]
        run.monitor.load_state_dict(ckpt["monitor"])
        run.train_ds.lengths[:] = ckpt["train_lengths"]
        log.info("resumed from %s after epoch %d", path, run.state.epoch)

    def _finish(
        self,
        model: MultimodalModel,
        contracts: dict[str, ModalityContract],
        task: Task,
        state: _State,
        train_ds: MultimodalDataset,
        val_ds: MultimodalDataset,
    ) -> TrainResult:
        if state.best_state is not None:
            model.load_state_dict(state.best_state, strict=False)
        model.eval()
        self._gather_bad_rows(train_ds)
        bad = train_ds.problem_rows() + val_ds.problem_rows()
        metrics = {
            "best_epoch": state.best_epoch,
            "epochs_run": state.epoch,
            "val": state.best_metrics,
            "train_rows": len(train_ds.rows),
            "val_rows": len(val_ds.rows),
            "bad_rows": len(bad),
        }
        artifact = Artifact(self.config, contracts, task, model, metrics, lineage=self._lineage)
        if not self.world.is_main:  # the same weights: rank 0 writes them
            return TrainResult(
                artifact,
                self.out_dir,
                state.history,
                state.best_epoch,
                state.best_metrics,
                bad,
                state.warnings,
            )
        self._write_bad_rows(bad)
        path = artifact.save(self.out_dir)
        log.info("saved artifact to %s (best epoch %d)", path, state.best_epoch)
        from polyfuse.inference.predict import Predictor

        predictor = Predictor(artifact, device=str(self.device))  # profile and card share it
        self._write_profile(predictor, val_ds.manifest)
        self._write_card(predictor, val_ds.manifest)
        return TrainResult(
            artifact, path, state.history, state.best_epoch, state.best_metrics, bad, state.warnings
        )

    def _gather_bad_rows(self, train_ds: MultimodalDataset) -> None:
        """Rank 0 learns the bad training rows the other ranks met in their shards (it
        loads them again to report them; indices only travel)."""
        found = self.sync.gather([b.index for b in train_ds.bad_rows])
        if self.world.is_main:
            for index in sorted({i for rank in found[1:] for i in rank}):
                train_ds[index]

    def _write_profile(self, predictor: Predictor, val: Manifest) -> None:
        """The monitoring reference profile (`polyfuse.monitor`) under ``monitor/reference``."""
        if self.reference is False or self.config.task not in ("multiclass", "multilabel"):
            return
        from polyfuse.monitor import PROFILE_DIR, build_profile

        manifest = val
        if not isinstance(self.reference, bool):
            manifest = Manifest.load(
                self.reference, tuple(self.config.modalities), self.config.label
            )
        profile = build_profile(predictor, manifest, progress=self.progress)
        profile.save(self.out_dir / PROFILE_DIR)
        log.info(
            "wrote the monitoring reference profile (%d rows of %s)",
            len(profile.observations),
            manifest.path,
        )

    def _write_card(self, predictor: Predictor, val: Manifest) -> None:
        """The model card (`polyfuse.release.card`), from the validation manifest.

        A card that cannot be written (say, a validation manifest without a row the model
        can evaluate) does not undo the training: it is logged with the command that
        writes it later on other data.
        """
        if not (self.card and self.cfg.card):
            return
        from polyfuse.release.card import CARD_MD, write_card

        try:
            write_card(predictor, val, source="validation split at training time")
        except PolyfuseError as exc:
            log.warning(
                "no model card written (%s); write one with: polyfuse card %s --data "
                "LABELLED_MANIFEST",
                exc,
                self.out_dir,
            )
            return
        log.info("wrote the model card (%s)", self.out_dir / CARD_MD)

    def _write_bad_rows(self, bad: list[BadRow]) -> None:
        path = self.out_dir / "bad_rows.jsonl"
        if not bad:
            path.unlink(missing_ok=True)
            return
        with path.open("w", encoding="utf-8") as f:
            for b in bad:
                f.write(json.dumps(b.to_dict()) + "\n")
        log.warning(
            "%d bad rows were skipped (details in %s); first: %s", len(bad), path, bad[0].describe()
        )


def _presence(model: MultimodalModel, batch: Batch) -> dict[str, Tensor]:
    """name -> ``(B,)`` modalities each sample has (what `MultimodalModel.encode` reports as
    ``present``), known before the forward so modality dropout can be passed into it."""
    absent = torch.zeros(batch.size, dtype=torch.bool, device=model.prior.device)
    out = {}
    for m in model.modalities:
        mb = batch.inputs.get(m)
        out[m] = mb.present if mb is not None and mb.num_present > 0 else absent
    return out


def _rank_rng(run: _Run) -> dict[str, Any]:
    """This process's random states: global RNGs, modality dropout, noise substitution."""
    return {
        "rng": rng_state(),
        "dropout_rng": run.gen.get_state(),
        "noise_rng": run.noise_rng.bit_generator.state,
    }


def train(
    config: Config | str | Path,
    train_manifest: str | Path,
    val_manifest: str | Path | None,
    out_dir: str | Path,
    **kwargs: Any,
) -> TrainResult:
    """Train from a config (object or YAML path) and return the result."""
    cfg = config if isinstance(config, Config) else Config.from_file(config)
    return Trainer(cfg, out_dir, **kwargs).fit(train_manifest, val_manifest)
