using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Hcsc.Clustering;
using Hcsc.Core.Devices;
using Hcsc.Core.IO;
using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Clustering;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>cluster</c>: hierarchical k-means (docs/method.md §2) of embeddings stored as <c>.npy</c>, for users who
/// cluster offline. Writes the hierarchy with <see cref="HierarchyWriter"/>; with <c>--json</c>
/// prints one JSON line per level (level, k, objective, empty_clusters_split, seconds).
/// Exit codes: 0 success, 2 bad input or arguments (nothing written).
/// </summary>
public static class ClusterCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var defaults = new ClusteringOptions();
        var features = new Option<FileInfo>("--features") { Description = "Embeddings [N, d] as .npy (float16/32/64, C order).", Required = true };
        var numCluster = new Option<string>("--num-cluster") { Description = "Clusters per level, finest first, strictly decreasing.", DefaultValueFactory = _ => string.Join(',', defaults.NumClusters) };
        var niter = new Option<int>("--niter") { Description = "Lloyd iterations per restart.", DefaultValueFactory = _ => defaults.Iterations };
        var nredo = new Option<int>("--nredo") { Description = "Restarts per level; the lowest objective wins.", DefaultValueFactory = _ => defaults.Restarts };
        var seed = new Option<long>("--seed") { Description = "Level l uses seed SEED + l.", DefaultValueFactory = _ => defaults.Seed };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N.", DefaultValueFactory = _ => "auto" };
        var normalize = new Option<bool>("--normalize") { Description = "L2-normalise every row before clustering (HCSC clusters normalised embeddings)." };
        var temperature = new Option<double>("--temperature") { Description = "τ: mean of each level's concentrations.", DefaultValueFactory = _ => new ObjectiveOptions().Temperature };
        var init = new Option<string>("--init") { Description = "Initialisation: random (distinct random points, as faiss) or kmeans++.", DefaultValueFactory = _ => "random" };
        var output = new Option<DirectoryInfo>("--output")
        {
            Description = "New or empty directory for prototypes_L.npy, centroids_L.npy (float32 [k, d]), assignments_L.npy (int64 [N]), " +
                "concentrations_L.npy (float32 [k]), parents_L.npy (int64 [k], all but the top level) and levels.json.",
            Required = true,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON line per level: level, k, objective, empty_clusters_split, seconds." };
        var command = new Command("cluster", "Hierarchical k-means (docs/method.md §2) of embeddings in a .npy file.");
        foreach (var option in new Option[] { features, numCluster, niter, nredo, seed, device, normalize, temperature, init, output, json })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            try
            {
                var counts = ParseCounts(parse.GetValue(numCluster)!);
                var initialization = parse.GetValue(init)!.ToLowerInvariant() switch
                {
                    "random" => KMeansInitialization.RandomPoints,
                    "kmeans++" => KMeansInitialization.KMeansPlusPlus,
                    var other => throw new ArgumentException($"--init '{other}' is not known; use random or kmeans++."),
                };
                var options = new ClusteringOptions
                {
                    NumClusters = counts, Iterations = parse.GetValue(niter), Restarts = parse.GetValue(nredo), Seed = parse.GetValue(seed), Initialization = initialization,
                };
                var clusterer = new HierarchicalKMeans(options, parse.GetValue(temperature));
                string outputDirectory = parse.GetValue(output)!.FullName;
                HierarchyWriter.RequireWritable(outputDirectory);
                var target = TorchDevices.Resolve(parse.GetValue(device)!);

                using var scope = NewDisposeScope();
                var points = NpyFile.ReadFloat32(parse.GetValue(features)!.FullName);
                if (points.dim() != 2)
                {
                    throw new ArgumentException($"--features must hold a 2-D array [N, d]; got shape ({string.Join(", ", points.shape)}).");
                }

                if (points.shape[0] < counts[0])
                {
                    throw new ArgumentException(
                        $"--features holds {points.shape[0]} embeddings, fewer than the {counts[0]} clusters of the finest level (--num-cluster {string.Join(',', counts)}); " +
                        "lower --num-cluster below the number of embeddings (for example 200,50,10 for a few thousand).");
                }

                points = points.to(target);
                if (parse.GetValue(normalize))
                {
                    points = nn.functional.normalize(points, dim: 1);
                }

                bool printJson = parse.GetValue(json);
                using var result = clusterer.Fit(points, Console.IsErrorRedirected ? null : new SynchronousProgress(ReportProgress));
                if (!Console.IsErrorRedirected)
                {
                    Console.Error.WriteLine();
                }

                HierarchyWriter.Write(outputDirectory, result);
                foreach (var level in result.Levels)
                {
                    Console.WriteLine(printJson
                        ? JsonSerializer.Serialize(new Dictionary<string, object>
                        {
                            ["level"] = level.Level,
                            ["k"] = level.K,
                            ["objective"] = level.Objective,
                            ["empty_clusters_split"] = level.EmptyClustersSplit,
                            ["seconds"] = Math.Round(level.Seconds, 3),
                        })
                        : string.Create(CultureInfo.InvariantCulture, $"level {level.Level}: k = {level.K}, {level.Points} points, objective {level.Objective:F4}, {level.EmptyClustersSplit} empty clusters split, {level.Seconds:F2} s"));
                }

                if (!printJson)
                {
                    Console.WriteLine($"Wrote the hierarchy to {outputDirectory}");
                }

                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or InvalidOperationException)
            {
                Console.Error.WriteLine($"cluster: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    private static int[] ParseCounts(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var counts = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out counts[i]))
            {
                throw new ArgumentException($"--num-cluster must be a comma-separated list of positive integers, e.g. 3000,2000,1000; got '{text}'.");
            }
        }

        return counts;
    }

    private static void ReportProgress(ClusteringProgress p) =>
        Console.Error.Write(string.Create(
            CultureInfo.InvariantCulture,
            $"\rlevel {p.Level + 1}/{p.LevelCount} restart {p.Restart + 1}/{p.Restarts} iteration {p.Iteration + 1}/{p.Iterations} objective {p.Objective:G8} [{p.Fraction,4:P0}]   "));

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<ClusteringProgress> report) : IProgress<ClusteringProgress>
    {
        public void Report(ClusteringProgress value) => report(value);
    }
}
