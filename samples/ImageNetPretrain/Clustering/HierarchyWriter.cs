using System.Text.Json;
using Hcsc.Clustering;
using Hcsc.Core.IO;

namespace Hcsc.Samples.ImageNetPretrain.Clustering;

/// <summary>
/// Writes a clustering result to a directory as plain <c>.npy</c> files plus <c>levels.json</c>, so
/// Python reads it with numpy alone. For level l = 0 (finest) … L−1:
/// <list type="bullet">
/// <item><c>prototypes_l.npy</c>: float32 [k_l, d], L2-normalised centres C_l;</item>
/// <item><c>centroids_l.npy</c>: float32 [k_l, d], raw k-means centres;</item>
/// <item><c>assignments_l.npy</c>: int64 [N], cluster a_l(i) of every input row;</item>
/// <item><c>concentrations_l.npy</c>: float32 [k_l], φ_l;</item>
/// <item><c>parents_l.npy</c>: int64 [k_l], parent at level l+1 of each prototype (not for the top level);</item>
/// </list>
/// and <c>levels.json</c>: the per-level reports. Files are written to a sibling temporary directory
/// which is renamed to the target at the end, so the target never holds a partial result.
/// </summary>
public static class HierarchyWriter
{
    /// <summary>Throws <see cref="IOException"/> when <paramref name="directory"/> exists and is not empty.</summary>
    public static void RequireWritable(string directory)
    {
        if (File.Exists(directory))
        {
            throw new IOException($"The output '{directory}' is a file; give a directory that does not exist or is empty.");
        }

        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
        {
            throw new IOException($"The output directory '{directory}' is not empty; give a new or empty directory (nothing was written).");
        }
    }

    /// <summary>Writes <paramref name="result"/> to <paramref name="directory"/> (see the type's summary for the layout).</summary>
    public static void Write(string directory, HierarchicalKMeansResult result)
    {
        RequireWritable(directory);
        string full = Path.GetFullPath(directory);
        string parent = Path.GetDirectoryName(full.TrimEnd(Path.DirectorySeparatorChar)) ?? ".";
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(full.TrimEnd(Path.DirectorySeparatorChar))}.partial-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            var hierarchy = result.Hierarchy;
            for (int l = 0; l < hierarchy.LevelCount; l++)
            {
                var level = hierarchy.Levels[l];
                NpyFile.Write(Path.Combine(staging, $"prototypes_{l}.npy"), level.Prototypes);
                NpyFile.Write(Path.Combine(staging, $"centroids_{l}.npy"), result.RawCentroids[l]);
                NpyFile.Write(Path.Combine(staging, $"assignments_{l}.npy"), level.Assignments);
                NpyFile.Write(Path.Combine(staging, $"concentrations_{l}.npy"), level.Concentrations);
                if (level.Parents is not null)
                {
                    NpyFile.Write(Path.Combine(staging, $"parents_{l}.npy"), level.Parents);
                }
            }

            var levels = result.Levels.Select(ToJson).ToArray();
            File.WriteAllText(Path.Combine(staging, "levels.json"), JsonSerializer.Serialize(levels, new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(full))
            {
                Directory.Delete(full);
            }

            Directory.Move(staging, full);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    /// <summary>The JSON object of one level: level, k, objective, empty_clusters_split, seconds (+ points, training_points, best_restart, searched_fraction, empty_clusters).</summary>
    public static Dictionary<string, object> ToJson(LevelReport report) => new()
    {
        ["level"] = report.Level,
        ["k"] = report.K,
        ["objective"] = report.Objective,
        ["empty_clusters_split"] = report.EmptyClustersSplit,
        ["seconds"] = Math.Round(report.Seconds, 3),
        ["points"] = report.Points,
        ["training_points"] = report.TrainingPoints,
        ["best_restart"] = report.BestRestart,
        ["searched_fraction"] = Math.Round(report.SearchedFraction, 4),
        ["empty_clusters"] = report.EmptyClusters,
    };
}
