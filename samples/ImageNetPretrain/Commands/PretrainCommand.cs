using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Hcsc.Core.Distributed;
using Hcsc.Distributed.Mpi;
using Hcsc.Models.Backbones;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>pretrain</c>: the full HCSC pipeline. Option names follow the reference's <c>pretrain.py</c>.
/// Settings come from a preset (<c>--preset</c>; <c>synthetic-quick</c> for the built-in data),
/// then <c>--config</c>, then the options given on the command line.
/// </summary>
public static class PretrainCommand
{
    /// <summary>Builds the command; <paramref name="command"/> may be the root command (the no-argument run).</summary>
    public static Command Configure(Command command)
    {
        var map = new OptionMap();
        map.Scalar<string>(command, "--arch", "Model:Arch", "Backbone: resnet18, resnet34, resnet50, resnet101 or resnet152", "-a");
        map.Scalar<int>(command, "--epochs", "Training:Epochs", "Total epochs");
        map.Scalar<int>(command, "--batch-size", "Training:BatchSize", "Images per step", "-b");
        map.Scalar<double>(command, "--lr", "Training:LearningRate", "Base learning rate for a batch of 256 (scaled by batch/256)");
        map.Scalar<double>(command, "--momentum", "Training:SgdMomentum", "SGD momentum");
        map.Scalar<double>(command, "--wd", "Training:WeightDecay", "Weight decay");
        map.Scalar<int>(command, "--dim", "Model:Dim", "Embedding size d");
        map.Scalar<int>(command, "--queue-length", "Model:QueueLength", "Queue length Q (a multiple of the batch size)");
        map.Scalar<double>(command, "--m", "Model:EncoderMomentum", "EMA momentum of the key encoder");
        map.Scalar<double>(command, "--T", "Objective:Temperature", "Softmax temperature τ");
        map.Scalar<bool>(command, "--mlp", "Model:Mlp", "MLP projection head");
        map.Scalar<bool>(command, "--aug-plus", "Augmentation:AugPlus", "MoCo v2 augmentation (false: MoCo v1's)");
        map.Scalar<bool>(command, "--cos", "Training:Cosine", "Cosine learning-rate schedule");
        map.List(command, "--num-cluster", "Clustering:NumClusters", "Prototypes per level, finest first, e.g. 3000,2000,1000");
        map.Scalar<int>(command, "--warmup-epoch", "Training:WarmupEpochs", "Epochs of plain MoCo before the first clustering");
        map.Scalar<bool>(command, "--multi-crop", "Augmentation:MultiCrop", "Add the local views of multi-crop");
        map.List(command, "--local-crop-sizes", "Augmentation:LocalCropSizes", "Local view sizes, e.g. 192,160,128,96");
        map.List(command, "--local-crop-min-scales", "Augmentation:LocalCropMinScales", "Lower crop scale of each local view");
        map.List(command, "--local-crop-max-scales", "Augmentation:LocalCropMaxScales", "Upper crop scale of each local view");
        map.Scalar<bool>(command, "--instance-selection", "Objective:InstanceSelection", "ICSC: instance-wise selection of queue negatives");
        map.Scalar<bool>(command, "--proto-selection", "Objective:PrototypeSelection", "PCSC: selection of negative prototypes");
        map.Scalar<bool>(command, "--selection-on-local", "Objective:SelectionOnLocalViews", "Instance selection on the local views too");
        map.Scalar<string>(command, "--unselected", "Objective:UnselectedNegatives", "How unselected negatives count: ZeroLogit (reference) or Exclude (paper)");
        map.Scalar<string>(command, "--level-reduction", "Objective:InstanceLevelReduction", "ICSC over levels: Sum (reference) or Mean");
        map.Scalar<string>(command, "--kernels", "Objective:Kernels", "Loss kernels: Auto (C# SIMD kernels for CPU tensors), Host, or Tensor (tensor operations everywhere: the GPU's code path, on any device)");
        map.Scalar<bool>(command, "--reference-off-by-one", "Objective:ReproduceReferenceOffByOne", "Reproduce the reference's candidate-prototype off-by-one (docs/method.md R3)");
        map.Scalar<double>(command, "--crop-min-scale", "Augmentation:GlobalCropMinScale", "Lower RandomResizedCrop scale of the global crops");
        map.Scalar<double>(command, "--eval-crop-fraction", "Augmentation:EvalCropFraction", "Centre crop of the evaluation view, a fraction of the resized image (0.875: resize 256, crop 224; 1: the whole image)");
        map.Scalar<double>(command, "--blur-probability", "Augmentation:BlurProbability", "Probability of MoCo v2's Gaussian blur on a view (0 turns it off)");
        map.Scalar<int>(command, "--image-size", "Augmentation:ImageSize", "Side of the global crops");
        map.Scalar<long>(command, "--seed", "Training:Seed", "Seed of every random source");
        map.Scalar<int>(command, "--workers", "Training:Workers", "Data-loading threads (-1, the default without a preset: the cores available to this process; 0: on the training thread)", "-j");
        map.Scalar<string>(command, "--device", "Training:Device", "auto, cpu, cuda or cuda:N");
        map.Scalar<int>(command, "--save-freq", "Training:CheckpointEvery", "Checkpoint every this many epochs");

        var preset = new Option<string?>("--preset") { Description = $"Named configuration: {string.Join(", ", Presets.All.Keys)} (default: synthetic-quick for the built-in data, fashion-mnist / mnist for those datasets)" };
        var config = new Option<FileInfo?>("--config") { Description = "JSON file with an \"Hcsc\" section of options" };
        var set = new Option<string[]>("--set") { Description = "Any option as Section:Key=value, e.g. --set Clustering:Restarts=3 (repeatable)" };
        var dataset = new Option<string>("--dataset") { Description = $"Dataset: {string.Join(", ", DatasetFactory.Names)}", DefaultValueFactory = _ => "synthetic" };
        var data = new Option<string?>("--data") { Description = "Data folder: idx files, or an ImageFolder root with train/ and val/" };
        var experiment = new Option<string>("--exp-dir") { Description = "Experiment folder for checkpoints and metrics.jsonl", DefaultValueFactory = _ => "runs/hcsc" };
        var resume = new Option<string?>("--resume") { Description = "Checkpoint to resume from, or 'auto' for the experiment folder's latest" };
        var width = new Option<int?>("--width") { Description = "ResNet base width (64 standard; default 16 for the synthetic, Fashion-MNIST and MNIST data)" };
        var layout = new Option<ActivationLayout>("--layout") { Description = "Activation memory layout: Auto (channels-last on the CPU, channels-first on a GPU), ChannelsFirst or ChannelsLast" };
        var smallStem = new Option<bool?>("--small-stem") { Description = "Small-image stem for 28-64 px inputs (default on for synthetic and MNIST data)" };
        var knnEvery = new Option<int>("--knn-every") { Description = "Evaluate kNN every this many epochs (0: before and after training only)" };
        var maxImages = new Option<int>("--max-images") { Description = "Use at most this many training images (0: all)" };
        var everySteps = new Option<int>("--checkpoint-every-steps") { Description = "Also checkpoint every N steps inside an epoch (0: at epoch ends only)" };
        var strict = new Option<bool>("--strict-data") { Description = "Stop at the first undecodable image instead of skipping it" };
        var keep = new Option<int>("--keep-checkpoints") { Description = "Numbered checkpoints to keep, newest first (0: all)" };
        var retries = new Option<int>("--divergence-retries") { Description = "After a NaN/Inf loss or gradient, resume from the last good checkpoint with half the learning rate, at most this many times (0: stop)" };
        var distributed = new Option<string>("--distributed") { Description = "none, or mpi: data-parallel over the ranks of an MPI launcher (mpirun -np N dotnet hcsc-pretrain.dll pretrain --distributed mpi ...; docs/distributed.md)", DefaultValueFactory = _ => "none" };
        var skipPreflight = new Option<bool>("--skip-preflight") { Description = "Skip the checks run on the device before the first epoch (k-means, an HCSC step with selection, a checkpoint round trip)" };
        var clusterOn = new Option<ClusterInput>("--cluster-on") { Description = "What each epoch clusters: Pass (the training set embedded again, the reference's) or Keys (the keys the steps computed: no second pass)" };
        var onSignal = new Option<UserSignalAction>("--on-signal") { Description = $"What SIGUSR1/SIGUSR2 do (a cluster's warning before a time limit): Checkpoint (at the end of the current step, and go on) or Requeue (checkpoint and exit with {GracefulStop.RequeueExitCode})" };
        var cudnnBenchmark = new Option<bool>("--cudnn-benchmark") { Description = "On CUDA: cuDNN picks the fastest convolution algorithms by timing them (default true)", DefaultValueFactory = _ => true };
        var tf32 = new Option<bool>("--tf32") { Description = "On CUDA (Ampere and newer): TF32 tensor cores for float32 products and convolutions, 2-8x faster, ~1e-3 relative error (default false)" };
        var checkWeights = new Option<int>("--check-weights-every") { Description = "Debug, with --distributed mpi: verify every N steps that every rank holds the same weights (0: at the start and the end only)" };
        foreach (var option in new Option[] { preset, config, set, dataset, data, experiment, resume, width, smallStem, layout, knnEvery, maxImages, keep, strict, everySteps, retries, distributed, checkWeights, skipPreflight, cudnnBenchmark, tf32, onSignal, clusterOn })
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, cancellation) =>
        {
            string datasetName = parse.GetValue(dataset)!;
            bool smallImages = datasetName is "synthetic" or "fashion-mnist" or "mnist";
            string? presetName = parse.GetValue(preset) ?? Presets.DefaultFor(datasetName);
            IReadOnlyDictionary<string, string?>? presetSettings = null;
            if (presetName is not null && !Presets.All.TryGetValue(presetName, out presetSettings))
            {
                Console.Error.WriteLine($"Unknown preset '{presetName}'. Presets: {string.Join(", ", Presets.All.Keys)}.");
                return Task.FromResult(2);
            }

            var overrides = SettingParser.Parse(parse.GetValue(set) ?? [], Console.Error);
            if (overrides is null)
            {
                return Task.FromResult(2);
            }

            foreach (var (key, value) in map.Settings(parse))
            {
                overrides[key] = value;
            }

            if (smallImages && presetName is null && !overrides.ContainsKey("Augmentation:ImageSize"))
            {
                overrides["Augmentation:ImageSize"] = "32";
            }

            var settings = new PretrainSettings
            {
                Dataset = datasetName,
                Data = parse.GetValue(data),
                ExperimentDirectory = parse.GetValue(experiment)!,
                Resume = parse.GetValue(resume),
                Width = parse.GetValue(width) ?? (smallImages ? 16 : 64),
                SmallStem = parse.GetValue(smallStem) ?? smallImages,
                Layout = parse.GetValue(layout),
                KnnEvery = parse.GetValue(knnEvery),
                MaxImages = parse.GetValue(maxImages),
                KeepCheckpoints = parse.GetValue(keep),
                StrictData = parse.GetValue(strict),
                CheckpointEverySteps = parse.GetValue(everySteps),
                DivergenceRetries = parse.GetValue(retries),
                Distributed = parse.GetValue(distributed)!,
                CheckWeightsEvery = parse.GetValue(checkWeights),
                SkipPreflight = parse.GetValue(skipPreflight),
                OnSignal = parse.GetValue(onSignal),
                ClusterOn = parse.GetValue(clusterOn),
                CudnnBenchmark = parse.GetValue(cudnnBenchmark),
                Tf32 = parse.GetValue(tf32),
            };

            // The sample's settings and the HCSC options are checked together, so every problem is reported at once.
            var problems = settings.Validate();
            if (problems.Count > 0)
            {
                Console.Error.WriteLine($"Invalid settings:{Environment.NewLine}  {string.Join($"{Environment.NewLine}  ", problems)}");
            }

            var options = HcscOptionsLoader.Load(presetSettings, parse.GetValue(config), overrides, Console.Error);
            if (options is null || problems.Count > 0)
            {
                return Task.FromResult(2);
            }

            if (settings.Resume is not null && TryReadManifest(settings.ExperimentDirectory) is { } recorded)
            {
                // The checkpoint's shapes are the run's: take them from its run.json unless the command line sets them.
                var (resumed, taken) = ModelShape.ApplyRecorded(recorded, options, settings, overrides.Keys, parse.GetValue(width) is not null, parse.GetValue(smallStem) is not null);
                settings = resumed;
                if (taken.Count > 0)
                {
                    Console.WriteLine($"Resuming with the run's model shape from {RunManifest.FileName}: {string.Join(", ", taken)}");
                }
            }

            MpiCollectives? mpi = null;
            if (settings.Distributed == "mpi")
            {
                try
                {
                    mpi = MpiCollectives.Initialize();
                }
                catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException or NotSupportedException)
                {
                    Console.Error.WriteLine($"error: {e.Message}");
                    return Task.FromResult(1);
                }

                Console.Error.Flush();
                Console.WriteLine($"rank {mpi.Rank} of {mpi.Size} ({mpi.LibraryVersion.Split('\n')[0].Trim()})");
            }

            using (mpi)
            {
                return Task.FromResult(Run(options, settings, presetName, mpi, cancellation));
            }
        });
        return command;
    }

    private static int Run(Hcsc.Core.Options.HcscOptions options, PretrainSettings settings, string? presetName, MpiCollectives? mpi, CancellationToken cancellation)
    {
        // Data-parallel: rank 0 alone writes progress; the other ranks print nothing but errors.
        var output = mpi is { Rank: > 0 } ? TextWriter.Null : Console.Out;
        output.WriteLine($"HCSC pretraining{(presetName is null ? string.Empty : $" (preset {presetName})")}; options:");
        output.WriteLine(JsonSerializer.Serialize(options, new JsonSerializerOptions { Converters = { new JsonStringEnumConverter() } }));
        int code = Train(options, settings, output, mpi, cancellation, out bool agreedStop);
        if (code != 0 && !agreedStop && mpi is { Size: > 1 })
        {
            // The other ranks may wait in a collective for this one: end them all.
            Console.Error.Flush();
            mpi.Abort(code);
        }

        return code;
    }

    // agreedStop: every rank stopped after the same step with the same code (a signal honoured), so none waits for another.
    private static int Train(Hcsc.Core.Options.HcscOptions options, PretrainSettings settings, TextWriter output, ICollectives? collectives, CancellationToken cancellation, out bool agreedStop)
    {
        agreedStop = false;
        using var stop = GracefulStop.ListenToSignals(output, settings.OnSignal);
        try
        {
            DivergenceRetry.Execute(options, settings, output, stop, cancellation, collectives);
            return 0;
        }
        catch (RunStoppedException e)
        {
            agreedStop = true;
            Console.Error.WriteLine(e.Message);
            return e.ExitCode;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"Cancelled. Continue from the last checkpoint with: --exp-dir {settings.ExperimentDirectory} --resume auto");
            return 130;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (System.Runtime.InteropServices.ExternalException e)
        {
            // libtorch's errors (a CUDA error, a device out of memory): the first line is the cause, the rest a C++ trace.
            Console.Error.WriteLine($"error: libtorch: {e.Message.Split('\n')[0].Trim()}");
            Console.Error.WriteLine($"The run stopped; continue from the last checkpoint with: --exp-dir {settings.ExperimentDirectory} --resume auto");
            return 1;
        }
    }

    private static RunManifest? TryReadManifest(string directory)
    {
        try
        {
            return RunManifest.TryRead(directory);
        }
        catch (InvalidDataException e)
        {
            Console.Error.WriteLine($"warning: {e.Message}; the model shape comes from the command line.");
            return null;
        }
    }

    /// <summary>A <c>pretrain</c> subcommand.</summary>
    public static Command Create() => Configure(new Command("pretrain", "HCSC pretraining: warm-up with MoCo, then hierarchical prototypes and selective contrast every epoch."));
}
