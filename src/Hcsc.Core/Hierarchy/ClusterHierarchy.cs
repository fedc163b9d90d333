using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.Hierarchy;

/// <summary>
/// The result of hierarchical clustering (docs/method.md §2) and the contract between Hcsc.Clustering,
/// which produces it, and Hcsc.Losses, which consumes it. Build one from your own clustering with
/// <see cref="FromTensors(IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor})"/>; it is validated on construction: shapes, dtypes, devices, index
/// ranges, unit-norm prototypes, positive concentrations, and the tree property
/// a_{l+1}(i) = parent_l(a_l(i)) for every sample i and level l.
/// </summary>
public sealed class ClusterHierarchy : IDisposable
{
    private const double UnitNormTolerance = 1e-3;
    private readonly ClusterLevel[] _levels;
    private bool _disposed;

    private ClusterHierarchy(ClusterLevel[] levels, double? concentrationTemperature)
    {
        _levels = levels;
        ConcentrationTemperature = concentrationTemperature;
    }

    /// <summary>The levels, finest first.</summary>
    public IReadOnlyList<ClusterLevel> Levels => _levels;

    /// <summary>Number of levels L.</summary>
    public int LevelCount => _levels.Length;

    /// <summary>Number of dataset samples N.</summary>
    public long SampleCount => _levels[0].Assignments.shape[0];

    /// <summary>Embedding size d.</summary>
    public long EmbeddingSize => _levels[0].Prototypes.shape[1];

    /// <summary>The device all tensors live on.</summary>
    public Device Device => _levels[0].Prototypes.device;

    /// <summary>
    /// τ the concentrations were rescaled to (each level's mean φ, docs/method.md §2), when the hierarchy says so
    /// (<see cref="FromTensors(IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, double)"/>,
    /// as hierarchical k-means builds it); null for concentrations of unknown origin. The objective refuses a hierarchy
    /// whose τ is not its own, since its selection probabilities assume the same τ.
    /// </summary>
    public double? ConcentrationTemperature { get; }

    /// <summary>Prototype counts per level, finest first, e.g. [3000, 2000, 1000].</summary>
    public IReadOnlyList<long> ClusterCounts => _levels.Select(l => l.ClusterCount).ToArray();

    /// <summary>
    /// Builds a validated hierarchy from plain tensors, finest level first. Each list has one entry
    /// per level except <paramref name="parents"/>, which has one fewer (the top level has none).
    /// The inputs are not copied and stay the caller's to dispose; the hierarchy keeps its own handles.
    /// </summary>
    /// <param name="prototypes">Per level, L2-normalised prototypes <c>[k_l, d]</c>, float32 or float64.</param>
    /// <param name="assignments">Per level, the cluster of each sample <c>[N]</c>, int64 in [0, k_l).</param>
    /// <param name="concentrations">Per level, the concentration φ of each prototype <c>[k_l]</c>, finite and &gt; 0.</param>
    /// <param name="parents">Per level but the top, the parent of each prototype <c>[k_l]</c>, int64 in [0, k_{l+1}).</param>
    /// <exception cref="ArgumentException">Any check fails; the message lists every problem found.</exception>
    public static ClusterHierarchy FromTensors(
        IReadOnlyList<Tensor> prototypes,
        IReadOnlyList<Tensor> assignments,
        IReadOnlyList<Tensor> concentrations,
        IReadOnlyList<Tensor> parents) => Build(prototypes, assignments, concentrations, parents, concentrationTemperature: null);

    private static ClusterHierarchy Build(
        IReadOnlyList<Tensor> prototypes,
        IReadOnlyList<Tensor> assignments,
        IReadOnlyList<Tensor> concentrations,
        IReadOnlyList<Tensor> parents,
        double? concentrationTemperature)
    {
        ArgumentNullException.ThrowIfNull(prototypes);
        ArgumentNullException.ThrowIfNull(assignments);
        ArgumentNullException.ThrowIfNull(concentrations);
        ArgumentNullException.ThrowIfNull(parents);

        var problems = ClusterHierarchyValidator.Validate(prototypes, assignments, concentrations, parents, UnitNormTolerance);
        if (problems.Count > 0)
        {
            throw new ArgumentException(
                "The cluster hierarchy is invalid:" + Environment.NewLine + string.Join(Environment.NewLine, problems.Select(p => "  - " + p)));
        }

        int levelCount = prototypes.Count;
        var levels = new ClusterLevel[levelCount];
        for (int l = 0; l < levelCount; l++)
        {
            bool top = l == levelCount - 1;
            Tensor? similarity = null;
            if (!top)
            {
                using var scope = NewDisposeScope();
                similarity = prototypes[l].detach().mm(prototypes[l + 1].detach().t()).MoveToOuterDisposeScope();
            }

            levels[l] = new ClusterLevel(
                l,
                Own(prototypes[l]),
                Own(assignments[l]),
                Own(concentrations[l]),
                top ? null : Own(parents[l]),
                similarity is null ? null : Own(similarity));
        }

        return new ClusterHierarchy(levels, concentrationTemperature);
    }

    /// <summary>
    /// <see cref="FromTensors(IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor})"/>
    /// for concentrations rescaled to mean <paramref name="concentrationTemperature"/> per level (τ): the hierarchy
    /// records it (<see cref="ConcentrationTemperature"/>) so that an objective with another τ is refused.
    /// </summary>
    /// <param name="prototypes">Per level, L2-normalised prototypes <c>[k_l, d]</c>, float32 or float64.</param>
    /// <param name="assignments">Per level, the cluster of each sample <c>[N]</c>, int64 in [0, k_l).</param>
    /// <param name="concentrations">Per level, the concentration φ of each prototype <c>[k_l]</c>, finite and &gt; 0.</param>
    /// <param name="parents">Per level but the top, the parent of each prototype <c>[k_l]</c>, int64 in [0, k_{l+1}).</param>
    /// <param name="concentrationTemperature">τ &gt; 0, the mean the concentrations were rescaled to.</param>
    /// <exception cref="ArgumentException">Any check fails; the message lists every problem found.</exception>
    public static ClusterHierarchy FromTensors(
        IReadOnlyList<Tensor> prototypes,
        IReadOnlyList<Tensor> assignments,
        IReadOnlyList<Tensor> concentrations,
        IReadOnlyList<Tensor> parents,
        double concentrationTemperature)
    {
        if (Options.HcscOptionsValidator.TemperatureProblem(concentrationTemperature) is { } problem)
        {
            throw new ArgumentOutOfRangeException(nameof(concentrationTemperature), concentrationTemperature, problem);
        }

        return Build(prototypes, assignments, concentrations, parents, concentrationTemperature);
    }

    /// <summary>Returns a copy of this hierarchy on <paramref name="device"/> (this one stays valid).</summary>
    public ClusterHierarchy To(Device device)
    {
        ThrowIfDisposed();
        using var scope = NewDisposeScope();
        var moved = Build(
            _levels.Select(l => l.Prototypes.to(device)).ToArray(),
            _levels.Select(l => l.Assignments.to(device)).ToArray(),
            _levels.Select(l => l.Concentrations.to(device)).ToArray(),
            _levels.Take(_levels.Length - 1).Select(l => l.Parents!.to(device)).ToArray(),
            ConcentrationTemperature);
        return moved;
    }

    /// <summary>True once <see cref="Dispose"/> was called: its tensors are gone.</summary>
    public bool IsDisposed => _disposed;

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var tensor in _levels.SelectMany(l => l.OwnedTensors()))
        {
            tensor.Dispose();
        }
    }

    private static Tensor Own(Tensor tensor) => tensor.detach().DetachFromDisposeScope();

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
