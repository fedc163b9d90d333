using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>semisup</c>: semi-supervised evaluation — the checkpoint's backbone and a new linear classifier fine-tuned
/// together on 1 % or 10 % of the training labels (a class-balanced subset drawn with a seed, or a list file of image
/// indices), then top-1 / top-5 on the validation set, appended to metrics.jsonl beside the checkpoint.
/// </summary>
public static class SemisupCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("semisup", "Fine-tune backbone + classifier on a fraction of the labels (1 % or 10 %, or a list file); top-1/top-5 on the validation set.");
        var source = new CheckpointModelOptions();
        source.AddTo(command);
        var defaults = new FineTuningOptions();
        var percent = new Option<double>("--percent") { Description = "Share of the training labels used (class-balanced draw)", DefaultValueFactory = _ => 10 };
        var list = new Option<FileInfo?>("--labels-file") { Description = "File of training-image indices (one per line) instead of a draw" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs (x0.2 at 60 % and 80 %)", DefaultValueFactory = _ => defaults.Epochs };
        var lrBackbone = new Option<double>("--lr-backbone") { Description = "Learning rate of the backbone", DefaultValueFactory = _ => defaults.BackboneLearningRate };
        var lrClassifier = new Option<double>("--lr-classifier") { Description = "Learning rate of the classifier", DefaultValueFactory = _ => defaults.ClassifierLearningRate };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per step", DefaultValueFactory = _ => defaults.BatchSize };
        var seed = new Option<int>("--seed") { Description = "Seed of the label draw, the order and the crops", DefaultValueFactory = _ => 0 };
        foreach (var option in new Option[] { percent, list, epochs, lrBackbone, lrClassifier, batch, seed })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse => CheckpointModelOptions.ReportingUserErrors(() =>
        {
            var options = new FineTuningOptions
            {
                Epochs = parse.GetValue(epochs),
                BackboneLearningRate = parse.GetValue(lrBackbone),
                ClassifierLearningRate = parse.GetValue(lrClassifier),
                BatchSize = parse.GetValue(batch),
                Workers = parse.GetValue(source.Workers),
                Seed = parse.GetValue(seed),
            };
            var problems = options.Validate();
            if (problems.Count > 0)
            {
                throw new ArgumentException(string.Join(" ", problems));
            }

            var clock = Stopwatch.StartNew();
            using var loaded = source.Load(parse);
            var train = loaded.Data.Train;
            var file = parse.GetValue(list);
            int[] indices = file is not null ? LabelSubset.Read(file.FullName, train.Count) : LabelSubset.Draw(train.Labels, parse.GetValue(percent), options.Seed);
            string what = file is not null ? $"{indices.Length} labelled images from {file.Name}" : string.Create(CultureInfo.InvariantCulture, $"{parse.GetValue(percent)} % of the labels: {indices.Length} images, seed {options.Seed}");
            var labelled = new DatasetSubset(train, indices, what);
            Console.WriteLine($"semisup: fine-tuning on {labelled.Description}; {options.Epochs} epochs, lr backbone {options.BackboneLearningRate}, classifier {options.ClassifierLearningRate}");
            var progress = new ProgressReporter(Console.Out, "semisup", options.Epochs);
            var result = FineTuning.Train(loaded.Model.QueryEncoder, labelled, loaded.Data.Validation, train.ClassNames.Count, loaded.EvaluationView, options, loaded.Device,
                (epoch, loss) => progress.Report(Numbering.Displayed(epoch), () => string.Create(CultureInfo.InvariantCulture, $"loss {loss:F4}")));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"semisup on {loaded.Data.Validation.Description} (checkpoint epoch {loaded.Epoch}, {indices.Length} labels): top-1 {result.Top1:F2} %, top-5 {result.Top5:F2} % ({clock.Elapsed.TotalSeconds:F0}s)"));
            new MetricsLog(Path.Combine(loaded.ExperimentDirectory, "metrics.jsonl")).Append(new Dictionary<string, object?>
            {
                ["evaluation"] = "semisup",
                ["checkpoint_epoch"] = loaded.Epoch,
                ["semisup_labels"] = indices.Length,
                ["semisup_percent"] = file is null ? parse.GetValue(percent) : null,
                ["semisup_top1"] = result.Top1,
                ["semisup_top5"] = result.Top5,
                ["semisup_losses"] = result.EpochLosses,
                ["seconds"] = clock.Elapsed.TotalSeconds,
            });
            return 0;
        }));
        return command;
    }
}
