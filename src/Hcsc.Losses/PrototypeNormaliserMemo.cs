using Hcsc.Core.Hierarchy;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// What prototype selection needs that depends on the hierarchy alone, computed once per hierarchy:
/// the parents' log-normalisers of every level below the top (<see cref="PrototypeSelector.ParentLogNormalisers"/>)
/// and the R3 bound max_i a_l(i) per level.
/// </summary>
internal sealed class PrototypeNormaliserMemo : IDisposable
{
    private readonly Tensor?[] _parentLogNormalisers;
    private readonly Tensor[] _offByOneBounds;

    private PrototypeNormaliserMemo(ClusterHierarchy hierarchy, double temperature, Tensor?[] parentLogNormalisers, Tensor[] offByOneBounds)
    {
        Hierarchy = hierarchy;
        Temperature = temperature;
        _parentLogNormalisers = parentLogNormalisers;
        _offByOneBounds = offByOneBounds;
    }

    public ClusterHierarchy Hierarchy { get; }

    public double Temperature { get; }

    public static PrototypeNormaliserMemo Create(ClusterHierarchy hierarchy, double temperature)
    {
        int levels = hierarchy.LevelCount;
        var normalisers = new Tensor?[levels];
        var bounds = new Tensor[levels];
        for (int l = 0; l < levels; l++)
        {
            normalisers[l] = l < levels - 1
                ? PrototypeSelector.ParentLogNormalisers(hierarchy.Levels[l], hierarchy.Levels[l + 1], temperature).DetachFromDisposeScope()
                : null;
            bounds[l] = hierarchy.Levels[l].Assignments.max().DetachFromDisposeScope();
        }

        return new PrototypeNormaliserMemo(hierarchy, temperature, normalisers, bounds);
    }

    public Tensor ParentLogNormalisers(int level) => _parentLogNormalisers[level]!;

    public Tensor OffByOneBound(int level) => _offByOneBounds[level];

    public void Dispose()
    {
        foreach (var tensor in _parentLogNormalisers)
        {
            tensor?.Dispose();
        }

        foreach (var tensor in _offByOneBounds)
        {
            tensor.Dispose();
        }
    }
}
