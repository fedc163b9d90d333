using System.Diagnostics;
using System.Globalization;
using Hcsc.Clustering;
using Hcsc.Core.Devices;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Core.Randomness;
using Hcsc.Runtime;
using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using Hcsc.Models.Distributed;
using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Clustering;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// The HCSC pretraining loop (docs/method.md §5, §6, §8): warm-up epochs of MoCo InfoNCE; then, every epoch,
/// the training set embedded by the key encoder and clustered hierarchically, and the HCSC
/// objective with instance and prototype selection. SGD with the lr scaling rule and a cosine
/// schedule; checkpoints every few epochs and at the end (atomic); metrics.jsonl per epoch;
/// resume from a checkpoint continues at the next epoch with the same model, optimiser, queue and
/// random state.
/// </summary>
public sealed class PretrainRun
{
    /// <summary>The checkpoint file name of the latest completed epoch in the experiment folder.</summary>
    public const string LatestCheckpoint = "checkpoint_latest.hcsc";

    private readonly HcscOptions _options;
    private readonly PretrainSettings _settings;
    private readonly TextWriter _output;
    private readonly GracefulStop _stop;
    private readonly int _workers;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, byte> _skippedThisEpoch = new();
    private readonly ICollectives _group;
    private readonly DataParallelRanks _ranks;
    private readonly RunCheckpoints _checkpoints;
    private readonly bool _root;
    private int _globalStep;

    /// <summary>Prepares a run; nothing happens until <see cref="Execute"/>.</summary>
    /// <param name="options">The validated options.</param>
    /// <param name="settings">The sample's own settings.</param>
    /// <param name="output">Where progress goes.</param>
    /// <param name="stop">A stop request (signals) honoured after the current step with a checkpoint; null: none.</param>
    /// <param name="collectives">
    /// The ranks of a data-parallel run (docs/distributed.md); null: one process. Every rank runs the same
    /// <see cref="PretrainRun"/>; rank 0 alone writes the experiment folder and the progress.
    /// </param>
    public PretrainRun(HcscOptions options, PretrainSettings settings, TextWriter output, GracefulStop? stop = null, ICollectives? collectives = null)
    {
        _options = options;
        _settings = settings;
        _group = collectives ?? SingleProcessCollectives.Instance;
        _root = _group.Rank == 0;
        _ranks = new DataParallelRanks(_group);
        _output = _root ? output : TextWriter.Null;
        _stop = stop ?? new GracefulStop();
        _checkpoints = new RunCheckpoints(options, settings, _output, _stop, _group);
        _workers = options.Training.Workers >= 0 ? options.Training.Workers : DataParallelRanks.CoresOfThisRank();
    }

    /// <summary>For tests: the norm layer of both encoders (null: the ResNet's batch norm).</summary>
    public Func<long, nn.Module<Tensor, Tensor>>? NormLayer { get; init; }

    /// <summary>For tests: called after every training step with the epoch, the step, the loss (the mean over the ranks) and the model.</summary>
    public Action<int, int, double, HcscModel>? AfterStep { get; init; }

    /// <summary>For tests: false leaves out the kNN and clustering evaluations before and after training.</summary>
    public bool Evaluations { get; init; } = true;

    /// <summary>Trains, evaluates before and after, and returns the final evaluation.</summary>
    public PretrainOutcome Execute(CancellationToken cancellation = default)
    {
        var training = _options.Training;
        var device = ResolveDevice();
        using var kernels = KernelSelection.Use(_options.Objective.Kernels);
        PrepareDevice(device);
        using var random = RandomSources.SeedEverything(training.Seed);
        var data = OpenData(device);
        Directory.CreateDirectory(_settings.ExperimentDirectory);
        var metrics = new MetricsLog(Path.Combine(_settings.ExperimentDirectory, "metrics.jsonl"));
        using var model = CreateModel(device);
        var board = _root ? new TensorBoardLog(Path.Combine(_settings.ExperimentDirectory, "tensorboard")) : null;
        var packed = model.PackParameters(); // SGD, the EMA and the guard each a few kernels a step
        var guard = new NonFiniteGuard(
            model.named_parameters(),
            $"Lower --lr (now {training.LearningRate}) and resume from the last good checkpoint with --exp-dir {_settings.ExperimentDirectory} --resume auto.",
            packed);
        using var optimizer = new ExplicitScalarSgd(packed, training.ScaledLearningRate, training.SgdMomentum, weightDecay: training.WeightDecay);
        using var queue = new SelectiveKeyQueue(_options.Model.QueueLength, _options.Model.Dim, device, random.Generator);
        using var objective = new HcscObjective(_options.Objective);

        // Both generators are CPU generators (TorchSharp has no other kind): the masks are drawn on the device from it
        // through DeviceRandom; HcscModel shuffles the key batch with a CPU permutation. Data-parallel: each rank draws
        // its own rows' masks (seed + 1 + rank; each rank's state is checkpointed); the shuffle is drawn alike on every rank.
        using var maskGenerator = new Generator(unchecked((ulong)training.Seed) + 1 + (ulong)_group.Rank);
        using var shuffleGenerator = new Generator(unchecked((ulong)training.Seed) + 2);
        var generators = new RunGenerators(maskGenerator, shuffleGenerator);
        var (startEpoch, position) = ResumeIfAsked(model, optimizer, queue, generators, device, metrics);
        if (_root)
        {
            // Only now that a resume was accepted: a refused one leaves the record of the run that wrote the checkpoints.
            new RunManifest(_options, _settings).Write(_settings.ExperimentDirectory);
        }

        _ranks.StartIdentical(model);
        var before = startEpoch == 0 && position is null && Evaluations ? EvaluateTogether(model, data, device, "untrained") : null;
        if (before is not null)
        {
            metrics.Append(EvaluationRecord(-1, before));
        }

        var views = ViewSet.Training(_options.Augmentation, ViewTransform.ImageNetMean, ViewTransform.ImageNetStd);
        using var loader = new BatchLoader(data.Train, views, training.BatchSize, _workers, training.Seed)
        {
            Skipped = ReportSkipped, ShardRank = _group.Rank, ShardCount = _group.Size, PinMemory = device.type == DeviceType.CUDA,
        };
        using var keys = _settings.ClusterOn == ClusterInput.Keys ? new KeyBank(data.Train.Count, _options.Model.Dim, device) : null;
        var run = new RunState(model, optimizer, queue, objective, generators, guard, board, loader, data, device, keys);
        TrainEpochs(run, startEpoch, position, metrics, cancellation);
        return Finish(run, before, metrics);
    }

    // The run's device (data-parallel: this rank's GPU), after the settings and the ranks' preconditions are checked.
    private Device ResolveDevice()
    {
        if (_settings.Validate() is { Count: > 0 } problems)
        {
            throw new ArgumentException(string.Join(Environment.NewLine, problems));
        }

        if (_ranks.Problems(_options) is { Count: > 0 } distributedProblems)
        {
            throw new ArgumentException(string.Join(Environment.NewLine, distributedProblems));
        }

        var device = _ranks.DeviceOfThisRank(TorchDevices.Resolve(_options.Training.Device), _options.Training.Device);
        if (_options.Objective.Kernels == KernelPath.Host && device.type != DeviceType.CPU)
        {
            throw new ArgumentException($"Objective:Kernels (--kernels) is Host, whose C# kernels need CPU tensors, but the run's device is {device}. Use Auto or Tensor there.");
        }

        return device;
    }

    // CUDA's switches, then the preflight, before the random sources are seeded (its draws do not change the run's).
    private void PrepareDevice(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            bool benchmark = CudaSwitches.Apply(_settings.CudnnBenchmark, _settings.Tf32);
            _output.WriteLine($"CUDA: cuDNN benchmark {(benchmark ? (_settings.CudnnBenchmark ? "on" : "off") : "not reachable in this libtorch")}, TF32 {(_settings.Tf32 ? "on" : "off")}");
        }

        if (!_settings.SkipPreflight)
        {
            double seconds = Preflight.Run(device, _options.Objective, _settings.ExperimentDirectory);
            if (device.type != DeviceType.CPU)
            {
                _output.WriteLine($"Preflight on {device}: hierarchical k-means, an HCSC step with selection and a checkpoint round trip passed ({seconds:F1} s)");
            }
        }
    }

    // The data set, announced with the device, and refused when it is smaller than a batch or the finest level.
    private DatasetPair OpenData(Device device)
    {
        var training = _options.Training;
        var data = DatasetFactory.Open(_settings.Dataset, _settings.Data, _options.Augmentation.ImageSize, _settings.MaxImages);
        _output.WriteLine($"Data: {data.Train.Description}; kNN against {data.Validation.Description}");
        _output.WriteLine($"Device: {device}; {get_num_threads()} torch threads, {_workers} data workers");
        if (_group.Size > 1)
        {
            _output.WriteLine(
                $"Distributed: {_group.Size} ranks (this is rank {_group.Rank}); global batch {training.BatchSize}, {training.BatchSize / _group.Size} images a rank; " +
                (_ranks.ShuffleKeysAcrossRanks(_options.Model) ? $"key batch shuffled over the ranks, {_options.Model.BatchNormSplits / _group.Size} BN split(s) a rank" : "batch norm per rank, key batch not shuffled"));
        }

        if (TorchRuntime.Prepare().OneDnn is { ConvolutionsUseOneDnn: false } oneDnn)
        {
            _output.WriteLine($"note: {oneDnn.Reason}");
        }

        if (data.Train.Count < training.BatchSize)
        {
            throw new ArgumentException($"The training set has {data.Train.Count} images, fewer than one batch of {training.BatchSize}; lower --batch-size.");
        }

        if (data.Train.Count < _options.Clustering.NumClusters[0])
        {
            throw new ArgumentException(
                $"The training set has {data.Train.Count} images, fewer than the {_options.Clustering.NumClusters[0]} prototypes of the finest level; lower --num-cluster.");
        }

        return data;
    }

    // Both encoders on the device; sizes whose batch norm would see one value per channel are refused.
    private HcscModel CreateModel(Device device)
    {
        var model = new HcscModel(_ranks.ModelOptionsOfThisRank(_options.Model), () => ResNet.Create(new ResNetOptions
        {
            Arch = _options.Model.Arch,
            SmallImageStem = _settings.SmallStem,
            BaseWidth = _settings.Width,
            Layout = _settings.Layout,
            NormLayer = NormLayer,
        }));
        model.to(device);
        var problems = model.BatchNormProblems(
            _options.Training.BatchSize / _group.Size, _options.Augmentation.ImageSize, _options.Augmentation.MultiCrop ? _options.Augmentation.ResolvedLocalCropSizes() : null);
        if (problems.Count > 0)
        {
            model.Dispose();
            throw new ArgumentException(string.Join(Environment.NewLine, problems));
        }

        return model;
    }

    // --resume: the epochs done and the position inside an epoch; the metrics after them are dropped.
    private (int StartEpoch, EpochPosition? Position) ResumeIfAsked(
        HcscModel model, TorchSharp.Modules.OptimizerHelper optimizer, SelectiveKeyQueue queue, RunGenerators generators, Device device, MetricsLog metrics)
    {
        string? resume = _settings.Resume == "auto" ? _checkpoints.FindForAutoResume() : _settings.Resume;
        if (resume is null)
        {
            return (0, null);
        }

        var (startEpoch, position) = _checkpoints.Resume(resume, model, optimizer, queue, generators, device);
        if (_root)
        {
            metrics.TruncateFrom(startEpoch);
        }

        if (int.TryParse(Environment.GetEnvironmentVariable("SLURM_RESTART_COUNT"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int restarts) && restarts > 0)
        {
            _output.WriteLine($"Slurm restart {restarts} of job {Environment.GetEnvironmentVariable("SLURM_JOB_ID") ?? "?"} (requeued): resumed from {resume}");
        }

        return (startEpoch, position);
    }

    // The epochs from startEpoch on: each trained, evaluated every KnnEvery epochs, recorded, checkpointed.
    private void TrainEpochs(RunState run, int startEpoch, EpochPosition? position, MetricsLog metrics, CancellationToken cancellation)
    {
        var training = _options.Training;
        for (int epoch = startEpoch; epoch < training.Epochs; epoch++)
        {
            cancellation.ThrowIfCancellationRequested();
            var record = TrainEpoch(run, epoch, position?.Epoch == epoch ? position : null, cancellation);
            int completed = epoch + 1; // epochs done, a count
            if (_settings.KnnEvery > 0 && completed % _settings.KnnEvery == 0 && completed < training.Epochs
                && EvaluateTogether(run.Model, run.Data, run.Device, $"epoch {completed}") is { } report)
            {
                record.KnnTop1 = report.Top1;
                record.EvaluationSeconds = report.Seconds;
            }

            run.Guard.CheckWeights(completed);
            if (_root)
            {
                metrics.Append(record);
                run.Board!.Epoch(completed, record);
            }

            if (completed % training.CheckpointEvery == 0 || completed == training.Epochs)
            {
                _checkpoints.Save(completed, run.Model, run.Optimizer, run.Queue, run.Generators);
            }
        }

        if (_settings.CheckWeightsEvery > 0)
        {
            ParameterChecksum.VerifyIdentical(run.Model, _group);
        }
    }

    // The final evaluation, the before/after lines, the plots.
    private PretrainOutcome Finish(RunState run, EvaluationReport? before, MetricsLog metrics)
    {
        var after = Evaluations ? EvaluateTogether(run.Model, run.Data, run.Device, "trained") : null;
        if (after is not null)
        {
            metrics.Append(EvaluationRecord(_options.Training.Epochs, after));
        }

        if (before is not null && after is not null)
        {
            _output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"kNN top-1: untrained {before.Top1:F2} % -> trained {after.Top1:F2} %"));
            _output.WriteLine($"NMI per level (fine labels): untrained {Join(before.Nmi)} -> trained {Join(after.Nmi)}");
        }

        if (_root)
        {
            WritePlots(metrics.Path);
        }

        _group.Barrier(); // rank 0's last checkpoint and metrics are on disk before any rank returns an outcome naming them
        return new PretrainOutcome(before, after, Path.Combine(_settings.ExperimentDirectory, LatestCheckpoint), metrics.Path);
    }

    // Plots are a convenience: a failure to draw them is reported, not allowed to fail a finished run.
    private void WritePlots(string metricsPath)
    {
        try
        {
            var written = RunPlots.Write(metricsPath, Path.Combine(_settings.ExperimentDirectory, "plots"));
            _output.WriteLine($"plots: {string.Join(", ", written)}");
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ArgumentException or DllNotFoundException or TypeInitializationException)
        {
            _output.WriteLine($"warning: the plots could not be drawn ({e.GetType().Name}: {e.Message}); metrics.jsonl has every figure.");
        }
    }

    /// <summary>
    /// One epoch (docs/method.md §6): after the warm-up the epoch's clustering, then the training steps, then the epoch's
    /// record for metrics.jsonl. A mid-epoch checkpoint's position resumes the epoch at its step with its clustering.
    /// </summary>
    private EpochRecord TrainEpoch(RunState run, int epoch, EpochPosition? resumeAt, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        var record = new EpochRecord { Epoch = epoch, LearningRate = SetLearningRate(run.Optimizer, epoch) };
        using var clustering = epoch >= _options.Training.WarmupEpochs ? ClusterForEpoch(run, epoch, resumeAt, record) : null;
        try
        {
            var trainClock = Stopwatch.StartNew();
            using var sums = new EpochAccumulator();
            var stepLosses = TrainSteps(run, epoch, resumeAt, clustering, sums, record, cancellation);
            AddEpochRecord(record, sums, stepLosses, clock, trainClock);
            if (record.Mean("embedding_spread") is { } spread && EmbeddingSpread.CollapseWarning(Numbering.Displayed(epoch), spread) is { } warning)
            {
                _output.WriteLine(warning);
            }

            return record;
        }
        finally
        {
            run.Queue.UseHierarchy(null); // the clustering is disposed with the epoch
        }
    }

    private double SetLearningRate(TorchSharp.Modules.OptimizerHelper optimizer, int epoch)
    {
        var training = _options.Training;
        double lr = LearningRateSchedule.At(epoch, training.Epochs, training.ScaledLearningRate, training.Cosine);
        foreach (var group in optimizer.ParamGroups)
        {
            group.LearningRate = lr;
        }

        return lr;
    }

    /// <summary>
    /// The epoch's hierarchy (docs/method.md §2, §6): the key encoder's embeddings of the training set clustered
    /// (or the clustering a mid-epoch checkpoint kept), handed to the queue, which refreshes its selection cache; its
    /// NMI / AMI / ARI against the labels and its time recorded; prototypes without members reported.
    /// </summary>
    private ClusteredEmbeddings ClusterForEpoch(RunState run, int epoch, EpochPosition? resumeAt, EpochRecord record)
    {
        var clock = Stopwatch.StartNew();
        FaultInjection.PauseAt($"epoch{Numbering.Displayed(epoch)}-clustering", _output, _stop);
        double embeddingSeconds = 0;
        int embeddedImages = 0;
        ClusteredEmbeddings clustering;
        if (resumeAt?.Clustering is { } kept)
        {
            clustering = kept;
        }
        else if (run.Keys is { } bank)
        {
            (clustering, embeddedImages, embeddingSeconds) = bank.Cluster(run.Model, run.Data.Train, _options, _options.Training.BatchSize, _workers, ReportSkipped, _group);
        }
        else
        {
            clustering = EmbeddingClustering.Run(run.Model, run.Data.Train, _options, _options.Training.BatchSize, _workers, run.Device, ReportSkipped, _group);
            embeddingSeconds = clock.Elapsed.TotalSeconds - clustering.KMeansSeconds;
            embeddedImages = run.Data.Train.Count;
        }

        try
        {
            run.Queue.UseHierarchy(clustering.Hierarchy);
            var (fine, coarse) = ClusteringQuality.Measure(clustering, run.Data.Train);
            record.SetClusteringQuality(fine, coarse);
            record.ClusteringSeconds = clock.Elapsed.TotalSeconds;
            record.EmbeddingSeconds = embeddingSeconds;
            record.EmbeddedImages = embeddedImages;
            record.KMeansSeconds = clustering.KMeansSeconds;
            record.EmptyPrototypes = WarnAboutEmptyPrototypes(clustering, epoch);
            _output.WriteLine($"epoch {Numbering.Displayed(epoch)}: clustered {run.Data.Train.Count} embeddings into {string.Join(" -> ", clustering.Hierarchy.ClusterCounts)} prototypes in {clock.Elapsed.TotalSeconds:F1}s; NMI {Join(fine.Nmi)}");
            return clustering;
        }
        catch
        {
            run.Queue.UseHierarchy(null);
            clustering.Dispose();
            throw;
        }
    }

    private int[] WarnAboutEmptyPrototypes(ClusteredEmbeddings clustering, int epoch)
    {
        var withoutMembers = clustering.EmptyPrototypes();
        if (withoutMembers.Any(e => e > 0))
        {
            _output.WriteLine($"warning: epoch {Numbering.Displayed(epoch)}: prototypes without members per level {string.Join(" / ", withoutMembers)} (of {string.Join(" / ", clustering.Hierarchy.ClusterCounts)}): the embeddings have fewer distinct values than prototypes. If the loss is not falling, lower --set Training:LearningRate or the cluster counts.");
        }

        return withoutMembers;
    }

    /// <summary>
    /// The epoch's steps from <paramref name="resumeAt"/>'s step on; returns every step's loss of the epoch. Records the
    /// managed bytes allocated per step (every thread: the data workers' too) as <c>managed_bytes_per_step</c>.
    /// </summary>
    private List<double> TrainSteps(
        RunState run, int epoch, EpochPosition? resumeAt, ClusteredEmbeddings? clustering, EpochAccumulator sums, EpochRecord record, CancellationToken cancellation)
    {
        run.Model.train();
        var trainingStep = new PretrainStep(run, _group, _ranks.ShuffleKeysAcrossRanks(_options.Model)) { AfterBackward = FaultInjection.CorruptGradientAt };
        var progress = new ProgressReporter(_output, $"epoch {Numbering.Displayed(epoch)}/{_options.Training.Epochs}", run.Loader.TrainingBatches);
        int step = resumeAt?.Step ?? 0;
        var stepLosses = new List<double>(resumeAt?.StepLosses ?? []);
        int firstStep = step;
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);
        foreach (var batch in run.Loader.TrainingEpoch(epoch, firstBatch: step, cancellation: cancellation))
        {
            using var held = batch; // its host memory goes back to the loader after the step
            using var scope = NewDisposeScope();
            var (loss, value, spread) = trainingStep.Run(batch, clustering?.Hierarchy, epoch, step);
            stepLosses.Add(value);
            run.Board?.Step((epoch * run.Loader.TrainingBatches) + step, stepLosses[^1]);
            sums.Add(loss, spread);
            AfterStep?.Invoke(epoch, step, value, run.Model);
            step++;
            _globalStep++;
            if (_settings.CheckWeightsEvery > 0 && _globalStep % _settings.CheckWeightsEvery == 0)
            {
                ParameterChecksum.VerifyIdentical(run.Model, _group);
            }

            progress.Report(step, sums.Summary);
            CheckpointInsideEpoch(run, new EpochPosition(epoch, step, stepLosses, clustering));
        }

        record.ManagedBytesPerStep = (GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore) / (double)Math.Max(1, step - firstStep);
        return stepLosses;
    }

    // After a step: the fault-injection pause point, then a checkpoint with the position when a stop was requested (and
    // the run stops), when a checkpoint was asked for (SIGUSR1/SIGUSR2) or every CheckpointEverySteps steps. A signal may
    // reach the ranks at different steps, or only some of them: they agree here, after the same step, on whether to stop,
    // to checkpoint, and on the exit code (the largest any rank was given), so every rank ends alike.
    private void CheckpointInsideEpoch(RunState run, EpochPosition position)
    {
        FaultInjection.PauseAt($"epoch{Numbering.Displayed(position.Epoch)}-step{position.Step}", _output, _stop, _ranks.Any);
        bool periodic = _settings.CheckpointEverySteps > 0 && position.Step % _settings.CheckpointEverySteps == 0 && position.Step < run.Loader.TrainingBatches;
        var (exitCode, asked) = _ranks.AgreeAfterStep(_stop.ExitCode, _stop.TakeCheckpointRequest());
        if (exitCode == 0 && !periodic && !asked)
        {
            return;
        }

        _checkpoints.Save(position.Epoch, run.Model, run.Optimizer, run.Queue, run.Generators, position);
        if (exitCode != 0)
        {
            _group.Barrier(); // rank 0's checkpoint is written before any rank ends
            throw new RunStoppedException(exitCode,
                $"Stopped in epoch {Numbering.Displayed(position.Epoch)} after step {position.Step} with a checkpoint; continue with --exp-dir {_settings.ExperimentDirectory} --resume auto.");
        }
    }

    /// <summary>The epoch's means of every loss part, its step losses, skipped images, memory and time (metrics.jsonl).</summary>
    private void AddEpochRecord(EpochRecord record, EpochAccumulator sums, List<double> stepLosses, Stopwatch epochClock, Stopwatch trainClock)
    {
        var means = sums.Means();
        double[] values = [.. means.Values];
        if (_group.Size > 1)
        {
            _group.AllReduceSum(values);
        }

        int part = 0;
        foreach (var name in means.Keys)
        {
            record.Means[name] = values[part++] / _group.Size;
        }

        record.SkippedImages = _skippedThisEpoch.Count;
        _skippedThisEpoch.Clear();
        record.StepLosses = stepLosses;
        using (var self = Process.GetCurrentProcess())
        {
            record.RssMib = self.WorkingSet64 / 1048576.0;
        }

        record.ManagedMib = GC.GetTotalMemory(forceFullCollection: false) / 1048576.0;
        record.LiveTensors = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        record.Seconds = epochClock.Elapsed.TotalSeconds;
        record.ImagesPerSecond = stepLosses.Count * _options.Training.BatchSize / trainClock.Elapsed.TotalSeconds; // the global batch: all ranks together
    }

    private EvaluationReport Evaluate(HcscModel model, DatasetPair data, Device device, string label)
    {
        var clock = Stopwatch.StartNew();
        FaultInjection.PauseAt($"{label.Replace(" ", string.Empty, StringComparison.Ordinal)}-evaluation", _output, _stop);
        var knn = BackboneKnn.Evaluate(model, data, ViewTransform.Eval(_options.Augmentation), _options.Training.BatchSize, _workers, device, group: _group);
        using var clustering = EmbeddingClustering.Run(model, data.Train, _options, _options.Training.BatchSize, _workers, device, ReportSkipped, _group);
        var (fine, coarse) = ClusteringQuality.Measure(clustering, data.Train);
        var report = new EvaluationReport(knn, fine, coarse, clock.Elapsed.TotalSeconds);
        string knnText = string.Join(", ", knn.Select(a => string.Create(CultureInfo.InvariantCulture, $"k={a.K}: {a.Top1:F2} %")));
        string coarseText = coarse.Nmi.Count > 0 ? $"; vs coarse labels {Join(coarse.Nmi)}" : string.Empty;
        _output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"evaluation ({label}): kNN top-1 {knnText}; NMI per level {Join(fine.Nmi)}{coarseText} ({clock.Elapsed.TotalSeconds:F1}s)"));
        return report;
    }

    // Called from data workers: one line at a time; each image counted once per epoch (training and clustering both meet it).
    private void ReportSkipped(int index, Exception error)
    {
        if (_settings.StrictData)
        {
            throw new InvalidDataException($"Image {index} could not be decoded ({error.Message}); --strict-data stops the run. Drop the option to skip such images.", error);
        }

        if (_skippedThisEpoch.TryAdd(index, 0))
        {
            lock (_output)
            {
                _output.WriteLine($"warning: image {index} could not be decoded and was replaced by the next one: {error.Message}");
            }
        }
    }

    private static Dictionary<string, object?> EvaluationRecord(int epoch, EvaluationReport report)
    {
        var record = new Dictionary<string, object?>
        {
            ["epoch"] = epoch,
            ["evaluation"] = epoch < 0 ? "untrained" : "final",
            ["knn_top1"] = report.Top1,
            ["knn"] = report.Knn.ToDictionary(a => a.K.ToString(CultureInfo.InvariantCulture), a => new { top1 = a.Top1, top5 = a.Top5 }),
            ["seconds"] = report.Seconds,
        };
        report.Fine.WriteTo(record);
        report.Coarse.WriteTo(record, "_coarse");
        return record;
    }

    /// <summary>The evaluation, computed by all ranks together (each embeds its share); the report on rank 0, null on the others.</summary>
    private EvaluationReport? EvaluateTogether(HcscModel model, DatasetPair data, Device device, string label)
    {
        // Collective: every rank embeds its share and clusters with the others; rank 0 alone prints and records.
        var report = Evaluate(model, data, device, label);
        return _root ? report : null;
    }

    private static string Join(IReadOnlyList<double> values) => string.Join(" / ", values.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)));
}
