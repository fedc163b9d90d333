using Hcsc.Core.Hierarchy;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>Tiny, seeded problems for the loss tests, plus managed copies of their tensors for the naive reference.</summary>
public sealed class LossFixture : IDisposable
{
    // N = 10 samples; levels 5 -> 3 -> 2 prototypes. a_{l+1} = parent_l(a_l).
    public static readonly long[] FineAssignments = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4];
    public static readonly long[] FineParents = [0, 0, 1, 2, 2];
    public static readonly long[] MiddleParents = [0, 1, 1];

    public LossFixture(ScalarType dtype, long batch = 4, long queueLength = 7, long dim = 3, long seed = 7, bool topLevelOnlyFromIndices = false)
    {
        _ = topLevelOnlyFromIndices;
        var g = new Generator((ulong)seed);
        Tensor Unit(long rows) => nn.functional.normalize(randn(new[] { rows, dim }, generator: g, dtype: ScalarType.Float64), dim: 1).to(dtype).DetachFromDisposeScope();
        Query = Unit(batch);
        Key = Unit(batch);
        Queue = Unit(queueLength);
        BatchIndices = tensor(new long[] { 3, 7, 0, 9, 5, 1 }.Take((int)batch).ToArray()).DetachFromDisposeScope();
        var a0 = FineAssignments;
        var a1 = a0.Select(c => FineParents[c]).ToArray();
        var a2 = a1.Select(c => MiddleParents[c]).ToArray();
        Assignments = [a0, a1, a2];
        Parents = [FineParents, MiddleParents];
        var prototypes = new[] { Unit(5), Unit(3), Unit(2) };
        var concentrations = new[]
        {
            tensor(new double[] { 0.15, 0.25, 0.0005, 0.2, 0.3 }).to(dtype), // one below the 1e-3 floor
            tensor(new double[] { 0.18, 0.22, 0.3 }).to(dtype),
            tensor(new double[] { 0.2, 0.4 }).to(dtype),
        };
        Hierarchy = ClusterHierarchy.FromTensors(prototypes, [tensor(a0), tensor(a1), tensor(a2)], concentrations, [tensor(FineParents), tensor(MiddleParents)]);
        Prototypes = prototypes.Select(Rows).ToArray();
        Concentrations = concentrations.Select(c => c.to(ScalarType.Float64).data<double>().ToArray()).ToArray();
    }

    public Tensor Query { get; }

    public Tensor Key { get; }

    public Tensor Queue { get; }

    public Tensor BatchIndices { get; }

    public ClusterHierarchy Hierarchy { get; }

    public long[][] Assignments { get; }

    public long[][] Parents { get; }

    public double[][][] Prototypes { get; }

    public double[][] Concentrations { get; }

    public long[] Indices => BatchIndices.data<long>().ToArray();

    public static double[][] Rows(Tensor t)
    {
        var flat = t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
        long cols = t.shape[1];
        return Enumerable.Range(0, (int)t.shape[0]).Select(r => flat.Skip((int)(r * cols)).Take((int)cols).ToArray()).ToArray();
    }

    /// <summary>The unit roundoff of <paramref name="dtype"/> (<see cref="FloatBounds"/>).</summary>
    public static double UnitRoundoff(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => FloatBounds.Float32,
        ScalarType.Float64 => FloatBounds.Float64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "float32 or float64"),
    };

    public static double[] Values(Tensor t) => t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();

    public void Dispose()
    {
        Hierarchy.Dispose();
        Query.Dispose();
        Key.Dispose();
        Queue.Dispose();
        BatchIndices.Dispose();
    }
}
