using System.CommandLine;
using System.Globalization;
using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Clustering;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>clusters</c>: embeds a checkpoint's training set with the key encoder, clusters it hierarchically as training
/// does (docs/method.md §2) and prints NMI, AMI and ARI of every level against the labels (and the coarse labels where the
/// data has them); the figures are appended to metrics.jsonl beside the checkpoint.
/// </summary>
public static class ClustersCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("clusters", "Hierarchical k-means of a checkpoint's embeddings: NMI, AMI and ARI of every level against the labels.");
        var source = new CheckpointModelOptions();
        source.AddTo(command);
        var numCluster = new Option<string?>("--num-cluster") { Description = "Prototypes per level, finest first, comma-separated (default: the run's)" };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per forward pass", DefaultValueFactory = _ => 128 };
        command.Options.Add(numCluster);
        command.Options.Add(batch);
        command.SetAction(parse => CheckpointModelOptions.ReportingUserErrors(() =>
        {
            using var loaded = source.Load(parse);
            var options = loaded.Run?.Options ?? new HcscOptions();
            if (parse.GetValue(numCluster) is { } counts)
            {
                options.Clustering.NumClusters = counts.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(c => int.Parse(c, CultureInfo.InvariantCulture)).ToArray();
            }

            options.Augmentation.ImageSize = loaded.EvaluationView.Size;
            options.Augmentation.EvalCropFraction = loaded.EvaluationView.CenterCropFraction;
            using var clustering = EmbeddingClustering.Run(loaded.Model, loaded.Data.Train, options, parse.GetValue(batch), parse.GetValue(source.Workers), loaded.Device);
            var (fine, coarse) = ClusteringQuality.Measure(clustering, loaded.Data.Train);
            Console.WriteLine($"clusters of {loaded.Data.Train.Description} (checkpoint epoch {loaded.Epoch}), {string.Join(" -> ", clustering.Hierarchy.ClusterCounts)} prototypes:");
            Print("labels", fine);
            Print("coarse labels", coarse);
            var record = new Dictionary<string, object?> { ["evaluation"] = "clusters", ["checkpoint_epoch"] = loaded.Epoch, ["num_cluster"] = options.Clustering.NumClusters };
            fine.WriteTo(record);
            coarse.WriteTo(record, "_coarse");
            new MetricsLog(Path.Combine(loaded.ExperimentDirectory, "metrics.jsonl")).Append(record);
            return 0;
        }));
        return command;
    }

    private static void Print(string against, ClusteringQuality quality)
    {
        for (int level = 0; level < quality.Nmi.Count; level++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  level {level} vs {against}: NMI {quality.Nmi[level]:F3}, AMI {quality.Ami[level]:F3}, ARI {quality.Ari[level]:F3}"));
        }
    }
}
