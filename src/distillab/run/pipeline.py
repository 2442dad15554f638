"""``run(cfg)``: one distillation run, stage by stage (see shared/DESIGN.md).

1. validate and save the config   2. data   3. teachers (store, checkpoint or trained here)
4. student distilled from them (offline) or trained with them (mutual)
5. baseline (the same student, no teacher)   6. report
"""

from __future__ import annotations

import copy
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from distillab.core.config import (
    ConfigError,
    build,
    check_writable,
    section,
)
from distillab.core.distributed import global_rank
from distillab.data.tensor_datamodule import TensorDataModule
from distillab.evaluation.bow_baseline import bag_of_words_baseline
from distillab.evaluation.domains import accuracy_by_domain
from distillab.evaluation.lm_report import language_model_report
from distillab.evaluation.robustness import robustness_report
from distillab.models.init_from_teacher import (
    check_init_from_teacher,
    init_from_teacher,
)
from distillab.models.output import TransformerClassifier
from distillab.models.pretrained import shared_tokenizer
from distillab.modules import ClassifierModule, DistillationModule, OptimizerConfig
from distillab.modules.mutual import MutualModule
from distillab.run.checks import (
    check_cache,
    check_language_model,
    check_loss,
    check_run_config,
)
from distillab.run.compress import compress, compression_report, plan_compression
from distillab.run.fitting import fit_and_test, test_only
from distillab.run.report import print_summary, write_report
from distillab.run.resume import copy_results, plan_resume, register
from distillab.run.stages import Stage, plan_stages, run_stages
from distillab.run.teachers import (
    check_teacher_augmentation,
    provide_teacher,
    teacher_attack,
    teacher_specs,
)
from distillab.teachers import FrozenTeacher
from distillab.teachers.cache import TeacherOutputCache
from distillab.teachers.ensemble import Teachers
from distillab.teachers.sequences import teacher_sequence_data

log = logging.getLogger(__name__)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def bind_pretrained_tokenizer(cfg: DictConfig, datamodule: TensorDataModule) -> None:
    """Text data tokenized by a pretrained model's own tokenizer, when its folder has one."""
    listed = cfg.model.get("teachers") or [cfg.model.teacher]
    nodes = {
        **{
            (f"model.teachers[{i}]" if cfg.model.get("teachers") else "model.teacher"): node
            for i, node in enumerate(listed)
        },
        "model.student": cfg.model.student,
    }
    tokenizer = shared_tokenizer({key: node.get("pretrained") for key, node in nodes.items()})
    if tokenizer is not None and hasattr(datamodule, "use_tokenizer"):
        datamodule.use_tokenizer(tokenizer)


def build_model(node: DictConfig, key: str, seed: int, datamodule: TensorDataModule) -> TransformerClassifier:
    L.seed_everything(seed, workers=True, verbose=False)
    return build(node, key, **datamodule.model_kwargs)


def reference_accuracy(teachers: list[dict[str, Any]], datamodule: TensorDataModule, per_domain: bool) -> float:
    """What the student is measured against: the teacher, the best of several, or the
    per-domain teachers together (each on its own domain) over the whole test split."""
    if not per_domain:
        return max(t["test"]["acc"] for t in teachers)
    domains = datamodule.splits["test"].extras["domain"]
    return sum(t["test_by_domain"][str(d)] * int((domains == d).sum()) for d, t in enumerate(teachers)) / len(domains)


def run(cfg: DictConfig, overrides: list[str] | None = None, multirun: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    check_run_config(cfg)
    job_dir = Path(cfg.paths.output_dir)  # this command's folder; a continued run works in its own
    rank0 = global_rank() == 0
    resume = plan_resume(cfg, multirun)
    if resume.action == "skip":
        log.info("this config finished in %s: its results are reused (ckpt_path=null runs it again)", resume.run_dir)
        metrics = copy_results(resume.run_dir, job_dir, {"reused_from": str(resume.run_dir)}) if rank0 else {}
        if rank0:
            print_summary(metrics, resume.run_dir)
        return metrics
    if resume.action == "continue":
        log.info(
            "continuing the interrupted run in %s from its last checkpoints (ckpt_path=null starts afresh)",
            resume.run_dir,
        )
        cfg.paths.output_dir = str(resume.run_dir)
    run_dir = Path(cfg.paths.output_dir)
    check_writable("paths.output_dir", run_dir)
    check_writable("paths.teachers_dir", Path(cfg.paths.teachers_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank0:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        if resume.action == "fresh":
            register(cfg, run_dir)
    stage, mutual = cfg.stage, cfg.mode == "mutual"

    # Build everything cheap first, so that a config mistake stops the run before any training.
    datamodule: TensorDataModule = build(cfg.data, "data")
    check_teacher_augmentation(cfg, datamodule)
    bind_pretrained_tokenizer(cfg, datamodule)
    with section("data"):  # files are read here: their errors name data.<key>
        datamodule.setup()
    with section("optimizer"):
        optimizer = OptimizerConfig(**cfg.optimizer)
    wants_student = stage in ("all", "distill")
    wants_baseline = stage == "baseline" or (stage == "all" and cfg.baseline)
    specs = teacher_specs(cfg, datamodule.num_domains) if stage != "baseline" else []
    teachers = [build_model(s.node, s.key, s.seed, datamodule) for s in specs]
    student_init = build_model(cfg.model.student, "model.student", cfg.seed, datamodule) if stage != "teacher" else None
    loss = build(cfg.loss, "loss") if wants_student else None
    plan = plan_compression(cfg)
    teacher_attack(cfg)  # checked now; built again where the teacher trains
    attacks = [
        build(node, f"robustness.attacks[{i}]") for i, node in enumerate(cfg.get("robustness", {}).get("attacks") or [])
    ]
    if cfg.get("bow_baseline") and not hasattr(datamodule, "labelled_texts"):
        raise ConfigError("bow_baseline", True, "needs text data (data=sst2, agnews, ...)")
    init_layers, stages, task = None, [], datamodule.task
    sequences = check_language_model(cfg, datamodule, teachers, student_init, loss)
    if wants_student:
        check_loss(cfg, loss, student_init, teachers, datamodule)
        stages = plan_stages(cfg, datamodule, student_init.shape, [t.shape for t in teachers])
        if stages and plan.gradual:
            raise ConfigError(
                "pruning",
                cfg.pruning.get("_target_"),
                "gradual pruning runs within one training, "
                "not across stages: prune after training (pruning=magnitude, heads, ...)",
            )
        check_cache(cfg, datamodule)
        if cfg.student_init.from_teacher:
            with section("student_init"):
                init_layers = check_init_from_teacher(
                    student_init, teachers[0], cfg.student_init.layers, cfg.student_init.k
                )

    metrics: dict[str, Any] = {
        "stage": stage,
        "mode": cfg.mode,
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "data": {k: len(v) for k, v in datamodule.splits.items()},
        "seconds": {},
        "val": {},
        "throughput": {},
    }
    val = metrics["val"]  # best val/acc of each trained model, by role
    throughput = metrics["throughput"]  # training steps' seconds per epoch and items/s, by role
    trained: dict[str, TransformerClassifier] = {}  # student and baseline, for the per-domain report

    def timed(role: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        result = fn()
        metrics["seconds"][role] = round(time.perf_counter() - t0, 2)
        return result

    if specs and not mutual:
        metrics["teachers"] = [
            timed(s.role, lambda s=s, m=m: {"role": s.role, **provide_teacher(cfg, s, m, datamodule, val, throughput)})
            for s, m in zip(specs, teachers)
        ]
    if cfg.get("bow_baseline"):
        texts, labels = datamodule.labelled_texts()
        metrics["bow_baseline"] = timed("bow_baseline", lambda: bag_of_words_baseline(texts, labels))
    if init_layers is not None:
        init_from_teacher(student_init, teachers[0], init_layers)

    def frozen_teachers() -> Teachers:
        return Teachers([FrozenTeacher(t) for t in teachers], route_by_domain=cfg.teacher.per_domain)

    # One cache for the run: the pruned student's recovery reads what the student's run built.
    cache = TeacherOutputCache(cfg.teacher.cache, cfg.paths.teachers_dir, cfg.teacher.cache_budget_mb)

    def distiller(model: TransformerClassifier, stage: Stage | None = None) -> DistillationModule:
        return DistillationModule(
            model,
            frozen_teachers(),
            stage.loss if stage else loss,
            datamodule.num_classes,
            stage.optimizer if stage else optimizer,
            cache,
            compile_model=cfg.compile,
            task=task,
            cache_topk=cfg.teacher.get("cache_topk"),
            cache_samples=cfg.teacher.get("cache_samples") or 0,
            sequences=sequences,
        )

    # Sequence-level KD: the student trains on the teacher's continuations of the corpus's
    # training blocks; its val and test splits stay the corpus's, like every other model's.
    student_data = datamodule
    if wants_student and sequences is not None and sequences.source == "teacher":
        student_data = timed(
            "teacher_sequences",
            lambda: teacher_sequence_data(teachers[0], datamodule, sequences, cfg.seed, cfg.paths.teachers_dir),
        )

    if wants_student and mutual:
        peers = [teachers[0], copy.deepcopy(student_init)]
        test = timed(
            "student",
            lambda: fit_and_test(
                MutualModule(peers, loss, datamodule.num_classes, optimizer),
                "mutual",
                cfg,
                datamodule,
                cfg.trainer.max_epochs,
                cfg.seed,
                val=val,
            ),
        )
        teacher_test = test_only(ClassifierModule(peers[0], datamodule.num_classes), cfg, datamodule)
        metrics["teachers"] = [
            {"role": "teacher", "params": peers[0].num_parameters, "test": teacher_test, "source": "mutual"}
        ]
        metrics["student"] = {"params": peers[1].num_parameters, "test": test}
        trained["student"] = peers[1]
    elif wants_student:
        student = copy.deepcopy(student_init)
        gradual = [plan.gradual] if plan.gradual else []
        if stages:  # the student passes through each stage; its test metrics are the last stage's
            metrics["stages"] = timed(
                "student",
                lambda: run_stages(
                    stages,
                    lambda st: fit_and_test(
                        distiller(student, st),
                        f"student_{st.name}",
                        cfg,
                        st.datamodule,
                        st.max_epochs,
                        cfg.seed,
                        val=val,
                    ),
                ),
            )
            test = metrics["stages"][stages[-1].name]
        else:
            test = timed(
                "student",
                lambda: fit_and_test(
                    distiller(student),
                    "student",
                    cfg,
                    student_data,
                    cfg.trainer.max_epochs,
                    cfg.seed,
                    gradual,
                    test_best=not gradual,
                    val=val,
                    throughput=throughput,
                ),
            )
        metrics["student"] = {"params": student.num_parameters, "test": test}
        metrics["teacher_cache"] = cache.summary()
        trained["student"] = student
    if wants_baseline:
        baseline = copy.deepcopy(student_init)
        module = ClassifierModule(baseline, datamodule.num_classes, optimizer, compile_model=cfg.compile, task=task)
        test = timed(
            "baseline",
            lambda: fit_and_test(
                module, "baseline", cfg, datamodule, cfg.trainer.max_epochs, cfg.seed, val=val, throughput=throughput
            ),
        )
        metrics["baseline"] = {"params": baseline.num_parameters, "test": test}
        trained["baseline"] = baseline

    if wants_student:

        def recover(model: TransformerClassifier, epochs: int) -> dict[str, float]:
            return fit_and_test(distiller(model), "pruned", cfg, datamodule, epochs, cfg.seed)

        def test(model: TransformerClassifier) -> dict[str, float]:
            return test_only(ClassifierModule(model, datamodule.num_classes, task=task), cfg, datamodule)

        entries, compressed = timed(
            "compression",
            lambda: compress(
                plan, cfg, datamodule, trained["student"], teachers[0] if teachers else None, recover, test
            ),
        )
        metrics.update(entries)
        if "pruned" in compressed:
            trained["pruned"] = compressed["pruned"]
    if datamodule.num_domains > 1:
        entries = [*zip(metrics.get("teachers", []), teachers), *((metrics[r], m) for r, m in trained.items())]
        for entry, model in entries:
            entry["test_by_domain"] = accuracy_by_domain(model, datamodule)
    if "teachers" in metrics:
        metrics["teacher"] = metrics["teachers"][0]
        if "student" in metrics:
            reference = reference_accuracy(metrics["teachers"], datamodule, cfg.teacher.per_domain and not mutual)
            metrics["reference_acc"] = reference
            metrics["retention"] = metrics["student"]["test"]["acc"] / reference
            metrics["param_ratio"] = metrics["student"]["params"] / max(t["params"] for t in metrics["teachers"])
    if attacks:  # accuracy under attack on the test split, for every model trained or loaded here
        models = [
            *((t["role"], t, m) for t, m in zip(metrics.get("teachers", []), teachers)),
            *((r, metrics[r], m) for r, m in trained.items()),
        ]
        timed("robustness", lambda: robustness_report(cfg, models, attacks, datamodule))
    if task == "language_model":
        models = {**{t["role"]: m for t, m in zip(metrics.get("teachers", []), teachers)}, **trained}
        rates = {role: entry["items_per_s"] for role, entry in throughput.items() if entry.get("items_per_s")}
        gen = cfg.get("generations") or {}
        metrics["language_model"] = timed(
            "language_model_report",
            lambda: language_model_report(
                models,
                teachers[0] if teachers else None,
                datamodule,
                rates,
                list(gen.get("prompts") or []),
                gen.get("new_tokens", 24),
                gen.get("temperature", 1.0),
                cfg.seed,
            ),
        )
    elif wants_student and cfg.get("compression_report", True):
        report_models = {metrics["teachers"][0]["role"]: teachers[0], **trained, **compressed}
        report_models.pop("baseline", None)
        teacher = metrics["teachers"][0]
        own_data = (
            {teacher["role"]: datamodule.restricted_to_domain(teacher["domain"])} if "domain" in teacher else None
        )  # a per-domain teacher is measured on its domain
        metrics["compression"] = compression_report(
            cfg, report_models, datamodule, metrics.get("reference_acc"), own_data
        )
    metrics["seconds"]["total"] = round(time.perf_counter() - started, 2)
    # What a hyper-parameter search optimises: the final model's best validation accuracy.
    final_role = next(
        (
            role
            for role in ("mutual", *(f"student_{s.name}" for s in stages[-1:]), "student", "baseline", "teacher")
            if role in val
        ),
        None,
    )
    metrics["objective"] = val.get(final_role)

    if rank0:
        write_report(metrics, run_dir, overrides or [])
        if run_dir != job_dir:
            copy_results(run_dir, job_dir, {"resumed_in": str(run_dir)})
        print_summary(metrics, run_dir)
    return metrics
