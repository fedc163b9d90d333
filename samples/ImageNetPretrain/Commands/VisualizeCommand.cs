using System.CommandLine;
using Hcsc.Clustering;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Losses;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Loading;
using Hcsc.Samples.ImageNetPretrain.Training;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>visualize</c>: pictures of what a checkpoint learned. <c>hierarchy.png</c>: for the largest fine clusters, the
/// training images nearest to the fine prototype, to its parent and to its grandparent, side by side (the paper's
/// hierarchy figure). <c>selection.png</c>: for a few queries, the queue negatives that instance selection (ICSC,
/// finest level) dropped next to those it kept.
/// </summary>
public static class VisualizeCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("visualize", "PNG pictures of a checkpoint: images nearest to prototypes of each level, and the negatives instance selection drops and keeps.");
        var source = new CheckpointModelOptions();
        source.AddTo(command);
        var output = new Option<string?>("--out") { Description = "Folder for the PNGs (default: visualize/ beside the checkpoint)" };
        var prototypes = new Option<int>("--prototypes") { Description = "Fine prototypes to show (the largest clusters)", DefaultValueFactory = _ => 4 };
        var neighbours = new Option<int>("--neighbours") { Description = "Images per prototype", DefaultValueFactory = _ => 6 };
        var queries = new Option<int>("--queries") { Description = "Queries in the selection picture", DefaultValueFactory = _ => 4 };
        var queueLength = new Option<int>("--queue") { Description = "Queue keys drawn from the training set for the selection picture", DefaultValueFactory = _ => 256 };
        var seed = new Option<int>("--seed") { Description = "Seed of the queue, the queries and the selection draw", DefaultValueFactory = _ => 0 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per forward pass", DefaultValueFactory = _ => 128 };
        foreach (var option in new Option[] { output, prototypes, neighbours, queries, queueLength, seed, batch })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse => CheckpointModelOptions.ReportingUserErrors(() =>
        {
            using var loaded = source.Load(parse);
            string directory = parse.GetValue(output) ?? Path.Combine(loaded.ExperimentDirectory, "visualize");
            var options = loaded.Run?.Options ?? new HcscOptions();
            var train = loaded.Data.Train;
            loaded.Model.eval();
            using var scope = NewDisposeScope();
            var embeddings = FeatureExtractor.Extract(train, loaded.Model.Embed, loaded.EvaluationView, parse.GetValue(batch), parse.GetValue(source.Workers), loaded.Device, out var sources); // [N, d]
            using var clustering = new HierarchicalKMeans(options.Clustering, options.Objective.Temperature).Fit(embeddings);
            string hierarchy = Path.Combine(directory, "hierarchy.png");
            Hierarchy(clustering.Hierarchy, embeddings, sources, train, parse.GetValue(prototypes), parse.GetValue(neighbours)).SavePng(hierarchy);
            string selection = Path.Combine(directory, "selection.png");
            Selection(clustering.Hierarchy.Levels[0], embeddings, sources, train, parse.GetValue(queries), parse.GetValue(queueLength), parse.GetValue(neighbours), parse.GetValue(seed)).SavePng(selection);
            Console.WriteLine($"visualize: {hierarchy}, {selection}");
            return 0;
        }));
        return command;
    }

    /// <summary>Rows: the largest fine clusters; groups: the images nearest to the prototype at each level up its chain of parents.</summary>
    public static ImageGrid Hierarchy(ClusterHierarchy hierarchy, Tensor embeddings, long[] sources, IImageDataset dataset, int prototypes, int neighbours)
    {
        using var scope = NewDisposeScope();
        var fine = hierarchy.Levels[0];
        var sizes = bincount(fine.Assignments, minlength: fine.ClusterCount);
        var largest = sizes.argsort(descending: true).cpu().data<long>().Take(prototypes).ToArray();
        var grid = new ImageGrid();
        foreach (long cluster in largest)
        {
            var groups = new List<(string, IReadOnlyList<RgbImage>)>();
            long prototype = cluster;
            foreach (var level in hierarchy.Levels)
            {
                var similarity = embeddings.matmul(level.Prototypes[prototype]); // [N]
                var nearest = similarity.topk(Math.Min(neighbours, (int)similarity.shape[0])).indexes.cpu().data<long>().ToArray();
                groups.Add(($"level {level.Index}: prototype {prototype}", nearest.Select(row => dataset.Load((int)sources[row])).ToArray()));
                if (level.Parents is null)
                {
                    break;
                }

                prototype = level.Parents[prototype].cpu().item<long>();
            }

            grid.AddRow(groups);
        }

        return grid;
    }

    /// <summary>Rows: a query, the queue negatives selection dropped (least likely to be kept first), those it kept (most similar first).</summary>
    public static ImageGrid Selection(ClusterLevel level, Tensor embeddings, long[] sources, IImageDataset dataset, int queries, int queueLength, int shown, int seed)
    {
        using var scope = NewDisposeScope();
        long n = embeddings.shape[0];
        var generator = new Generator(unchecked((ulong)seed));
        var order = randperm(n, generator: generator).to(embeddings.device);
        queueLength = (int)Math.Min(queueLength, n - 1);
        queries = (int)Math.Min(queries, n - queueLength);
        var queueRows = order.narrow(0, 0, queueLength);
        var queryRows = order.narrow(0, queueLength, queries);
        var queue = embeddings.index_select(0, queueRows);                           // [Q, d]
        var labels = level.Assignments.index_select(0, queryRows);                   // [B]
        var acceptance = InstanceSelector.AcceptanceProbabilities(queue, labels, level); // [B, Q]
        var mask = InstanceSelector.SampleMask(acceptance, new Generator(unchecked((ulong)seed) + 1)).to(ScalarType.Bool);
        var similarity = embeddings.index_select(0, queryRows).matmul(queue.t());   // [B, Q]
        long[] queueImages = queueRows.cpu().data<long>().ToArray();
        var grid = new ImageGrid();
        for (int b = 0; b < queries; b++)
        {
            bool[] kept = mask[b].cpu().data<bool>().ToArray();
            float[] accept = acceptance[b].to(ScalarType.Float32).cpu().data<float>().ToArray();
            float[] similar = similarity[b].to(ScalarType.Float32).cpu().data<float>().ToArray();
            RgbImage Image(int j) => dataset.Load((int)sources[queueImages[j]]);
            var dropped = Enumerable.Range(0, queueLength).Where(j => !kept[j]).OrderBy(j => accept[j]).Take(shown).Select(Image).ToArray();
            var keptImages = Enumerable.Range(0, queueLength).Where(j => kept[j]).OrderByDescending(j => similar[j]).Take(shown).Select(Image).ToArray();
            long queryRow = queryRows[b].cpu().item<long>();
            grid.AddRow(
            [
                ($"query (cluster {labels[b].cpu().item<long>()})", [dataset.Load((int)sources[queryRow])]),
                ($"dropped: {kept.Count(k => !k)} of {queueLength}", dropped),
                ("kept, most similar first", keptImages),
            ]);
        }

        return grid;
    }
}
