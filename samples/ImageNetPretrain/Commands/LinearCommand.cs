using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Loading;
using Hcsc.Samples.ImageNetPretrain.Training;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>linear</c>: the linear probe (docs/method.md §9) of a checkpoint's frozen backbone. By default on features computed once
/// under the evaluation transform (minutes on a CPU); with <c>--augment</c>, the reference protocol: every epoch the
/// training images go through RandomResizedCrop + flip and the backbone again.
/// </summary>
public static class LinearCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("linear", "Linear probe of a checkpoint's frozen backbone: top-1/top-5 on the validation set, appended to metrics.jsonl beside the checkpoint.");
        var source = new CheckpointModelOptions();
        source.AddTo(command);
        var defaults = new LinearProbeOptions();
        var epochs = new Option<int>("--epochs") { Description = "Epochs (reference 100; lr x0.1 at 60 % and 80 %)", DefaultValueFactory = _ => defaults.Epochs };
        var lr = new Option<double>("--lr") { Description = "Initial learning rate (reference 5.0)", DefaultValueFactory = _ => defaults.LearningRate };
        var momentum = new Option<double>("--momentum") { Description = "SGD momentum", DefaultValueFactory = _ => defaults.Momentum };
        var wd = new Option<double>("--wd") { Description = "Weight decay", DefaultValueFactory = _ => defaults.WeightDecay };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Samples per step, and images per forward pass", DefaultValueFactory = _ => defaults.BatchSize };
        var augment = new Option<bool>("--augment") { Description = "Reference protocol: fresh RandomResizedCrop + flip features every epoch (slow on a CPU) instead of cached features" };
        var seed = new Option<int>("--seed") { Description = "Seed of the classifier's initialisation, the sample order and the crops", DefaultValueFactory = _ => 0 };
        foreach (var option in new Option[] { epochs, lr, momentum, wd, batch, augment, seed })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse => CheckpointModelOptions.ReportingUserErrors(() =>
        {
            var options = new LinearProbeOptions
            {
                Epochs = parse.GetValue(epochs),
                LearningRate = parse.GetValue(lr),
                Momentum = parse.GetValue(momentum),
                WeightDecay = parse.GetValue(wd),
                BatchSize = parse.GetValue(batch),
                Seed = parse.GetValue(seed),
            };
            var problems = options.Validate();
            if (problems.Count > 0)
            {
                throw new ArgumentException(string.Join(" ", problems));
            }

            using var loaded = source.Load(parse);
            var result = Run(loaded, options, parse.GetValue(augment), parse.GetValue(source.Workers), Console.Out);
            return result is null ? 1 : 0;
        }));
        return command;
    }

    /// <summary>Runs the probe on a loaded checkpoint, prints and records the result.</summary>
    public static LinearProbeResult? Run(CheckpointModel loaded, LinearProbeOptions options, bool augment, int workers, TextWriter output)
    {
        var clock = Stopwatch.StartNew();
        var model = loaded.Model;
        model.eval(); // frozen backbone, BN in eval mode
        var data = loaded.Data;
        var evaluation = loaded.EvaluationView;
        (Tensor Features, Tensor Labels) Extract(IImageDataset dataset, ViewTransform view, long seed)
        {
            var features = FeatureExtractor.Extract(dataset, model.BackboneFeatures, view, options.BatchSize, workers, loaded.Device, out var rows, seed: seed);
            var labels = FeatureExtractor.Labels(dataset, rows, loaded.Device);
            return (features, labels);
        }

        var (validationFeatures, validationLabels) = Extract(data.Validation, evaluation, 0);
        using var v1 = validationFeatures;
        using var v2 = validationLabels;
        (Tensor Features, Tensor Labels)? cached = augment ? null : Extract(data.Train, evaluation, 0);
        var crops = new ViewTransform(evaluation.Size, 0.08, 1.0, PhotometricRecipe.None);
        output.WriteLine($"linear probe: {(augment ? "RandomResizedCrop + flip features every epoch" : "cached features (evaluation transform)")}, {validationFeatures.shape[1]}-d, {options.Epochs} epochs, lr {options.LearningRate}, batch {options.BatchSize}; {data.Train.Description}");
        var progress = new ProgressReporter(output, "linear", options.Epochs);
        try
        {
            void Progress(int epoch, double loss) => progress.Report(Numbering.Displayed(epoch), () => string.Create(CultureInfo.InvariantCulture, $"loss {loss:F4}"));
            int classes = data.Train.ClassNames.Count;
            var result = cached is { } c
                ? LinearProbe.Train(c.Features, c.Labels, validationFeatures, validationLabels, classes, options, Progress)
                : LinearProbe.Train(epoch => Extract(data.Train, crops, (options.Seed * 100_003L) + epoch), validationFeatures, validationLabels, classes, options, Progress);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"linear probe on {data.Validation.Description} ({(loaded.Untrained ? "untrained weights" : $"checkpoint epoch {loaded.Epoch}")}): top-1 {result.Top1:F2} %, top-5 {result.Top5:F2} % ({clock.Elapsed.TotalSeconds:F0}s)"));
            if (result.EpochLosses[^1] > result.EpochLosses[0])
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"warning: the probe's loss rose from {result.EpochLosses[0]:F3} to {result.EpochLosses[^1]:F3}: lr {options.LearningRate} is too high for these features (the reference's 5.0 suits ImageNet ResNet-50 features); try --lr {options.LearningRate / 50:G2}."));
            }

            new MetricsLog(Path.Combine(loaded.ExperimentDirectory, "metrics.jsonl")).Append(new Dictionary<string, object?>
            {
                ["evaluation"] = loaded.Untrained ? "linear_untrained" : "linear",
                ["checkpoint_epoch"] = loaded.Epoch,
                ["linear_top1"] = result.Top1,
                ["linear_top5"] = result.Top5,
                ["linear_mode"] = augment ? "augmented" : "cached",
                ["linear_epochs"] = options.Epochs,
                ["linear_lr"] = options.LearningRate,
                ["linear_losses"] = result.EpochLosses,
                ["seconds"] = clock.Elapsed.TotalSeconds,
            });
            return result;
        }
        finally
        {
            cached?.Features.Dispose();
            cached?.Labels.Dispose();
        }
    }
}
