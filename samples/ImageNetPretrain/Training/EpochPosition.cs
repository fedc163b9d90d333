using Hcsc.Core.Hierarchy;
using Hcsc.Samples.ImageNetPretrain.Clustering;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Where a run stopped inside an epoch, as a mid-epoch checkpoint keeps it: the epoch (0-based), the steps done in it,
/// their losses, and the epoch's clustering (so the resumed steps use the same prototypes rather than clustering a
/// model that has already moved on).
/// </summary>
/// <param name="Epoch">The epoch in progress (0-based).</param>
/// <param name="Step">Steps of it already taken.</param>
/// <param name="StepLosses">Their losses.</param>
/// <param name="Clustering">The epoch's clustering, or null in a warm-up epoch.</param>
public sealed record EpochPosition(int Epoch, int Step, IReadOnlyList<double> StepLosses, ClusteredEmbeddings? Clustering)
{
    private const string Prefix = "epoch_position/";

    /// <summary>The checkpoint metadata key of the step.</summary>
    public const string StepKey = "epoch_step";

    /// <summary>The tensors that hold this position in a checkpoint (CPU copies; the caller disposes them).</summary>
    public Dictionary<string, Tensor> ToTensors()
    {
        var tensors = new Dictionary<string, Tensor> { [Prefix + "step_losses"] = tensor(StepLosses.ToArray()) };
        if (Clustering is { } clustering)
        {
            tensors[Prefix + "sources"] = tensor(clustering.Sources);
            foreach (var level in clustering.Hierarchy.Levels)
            {
                string name = $"{Prefix}level{level.Index}/";
                tensors[name + "prototypes"] = level.Prototypes.cpu();
                tensors[name + "assignments"] = level.Assignments.cpu();
                tensors[name + "concentrations"] = level.Concentrations.cpu();
                if (level.Parents is { } parents)
                {
                    tensors[name + "parents"] = parents.cpu();
                }
            }
        }

        return tensors;
    }

    /// <summary>Reads a position back from a checkpoint's extra tensors (moved to <paramref name="device"/>); null when the checkpoint ends an epoch.</summary>
    public static EpochPosition? FromCheckpoint(long epoch, IReadOnlyDictionary<string, string> metadata, IReadOnlyDictionary<string, Tensor> tensors, Device device)
    {
        if (!metadata.TryGetValue(StepKey, out string? stepText) || !int.TryParse(stepText, out int step) || step == 0)
        {
            return null;
        }

        double[] losses = tensors.TryGetValue(Prefix + "step_losses", out var l) ? l.data<double>().ToArray() : [];
        ClusteredEmbeddings? clustering = null;
        if (tensors.TryGetValue(Prefix + "sources", out var sources))
        {
            var levels = Enumerable.Range(0, 64).TakeWhile(i => tensors.ContainsKey($"{Prefix}level{i}/prototypes")).ToArray();
            Tensor Get(int level, string part) => tensors[$"{Prefix}level{level}/{part}"].to(device);
            var hierarchy = ClusterHierarchy.FromTensors(
                levels.Select(i => Get(i, "prototypes")).ToArray(),
                levels.Select(i => Get(i, "assignments")).ToArray(),
                levels.Select(i => Get(i, "concentrations")).ToArray(),
                levels[..^1].Select(i => Get(i, "parents")).ToArray());
            clustering = new ClusteredEmbeddings(hierarchy, sources.data<long>().ToArray(), hierarchy);
        }

        return new EpochPosition(checked((int)epoch), step, losses, clustering);
    }
}
