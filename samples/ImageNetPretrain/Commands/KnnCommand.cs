using System.CommandLine;
using System.Globalization;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary><c>knn</c>: weighted kNN evaluation (docs/method.md §9) of a pretraining checkpoint's backbone.</summary>
public static class KnnCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("knn", "Weighted kNN top-1/top-5 (k = 10, 20, 100, 200; T = 0.07) of a checkpoint's backbone features.");
        var source = new CheckpointModelOptions();
        source.AddTo(command);
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per forward pass", DefaultValueFactory = _ => 128 };
        var ks = new Option<string>("--k") { Description = "Neighbour counts, comma-separated", DefaultValueFactory = _ => "10,20,100,200" };
        command.Options.Add(batch);
        command.Options.Add(ks);

        command.SetAction(parse => CheckpointModelOptions.ReportingUserErrors(() =>
        {
            using var loaded = source.Load(parse);
            int[] kValues = parse.GetValue(ks)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(k => int.Parse(k, CultureInfo.InvariantCulture)).ToArray();
            var accuracies = BackboneKnn.Evaluate(loaded.Model, loaded.Data, loaded.EvaluationView, parse.GetValue(batch), parse.GetValue(source.Workers), loaded.Device, kValues);
            Console.WriteLine($"kNN on {loaded.Data.Validation.Description} against {loaded.Data.Train.Description} (checkpoint epoch {loaded.Epoch}):");
            foreach (var a in accuracies)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  k = {a.K,4}: top-1 {a.Top1:F2} %, top-5 {a.Top5:F2} %"));
            }

            return 0;
        }));
        return command;
    }
}
