using Hcsc.Core.Hierarchy;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Core;

public class ClusterHierarchyTests
{
    // Six samples, two levels: 4 fine clusters -> 2 coarse clusters.
    private static readonly long[] FineAssignments = [0, 1, 1, 2, 3, 3];
    private static readonly long[] FineParents = [0, 0, 1, 1];
    private static readonly long[] CoarseAssignments = [0, 0, 0, 1, 1, 1];

    private static Tensor UnitRows(params float[][] rows) =>
        nn.functional.normalize(tensor(rows.SelectMany(r => r).ToArray()).reshape(rows.Length, rows[0].Length), dim: 1);

    public sealed record Parts(Tensor[] Prototypes, Tensor[] Assignments, Tensor[] Concentrations, Tensor[] Parents);

    private static Parts Valid() => new(
        [UnitRows([1, 0, 0], [0.8f, 0.6f, 0], [0, 1, 0], [0, 0, 1]), UnitRows([1, 0.3f, 0], [0, 0.2f, 1])],
        [tensor(FineAssignments), tensor(CoarseAssignments)],
        [tensor(new float[] { 0.1f, 0.2f, 0.3f, 0.4f }), tensor(new float[] { 0.5f, 0.6f })],
        [tensor(FineParents)]);

    private static ClusterHierarchy Build(Parts p) => ClusterHierarchy.FromTensors(p.Prototypes, p.Assignments, p.Concentrations, p.Parents);

    [Fact]
    public void A_valid_hierarchy_exposes_its_levels_and_the_inter_level_similarity()
    {
        using var scope = NewDisposeScope();
        var parts = Valid();
        using var hierarchy = Build(parts);

        hierarchy.LevelCount.Should().Be(2);
        hierarchy.SampleCount.Should().Be(6);
        hierarchy.EmbeddingSize.Should().Be(3);
        hierarchy.ClusterCounts.Should().Equal(4, 2);
        hierarchy.Levels[1].Parents.Should().BeNull();
        hierarchy.Levels[1].SimilarityToParents.Should().BeNull();

        // S_0 = C_0 · C_1ᵀ, checked entry by entry with managed dot products.
        var s = hierarchy.Levels[0].SimilarityToParents!;
        s.shape.Should().Equal(4, 2);
        float[] p0 = parts.Prototypes[0].data<float>().ToArray(), p1 = parts.Prototypes[1].data<float>().ToArray();
        for (int i = 0; i < 4; i++)
        {
            for (int j = 0; j < 2; j++)
            {
                double dot = Enumerable.Range(0, 3).Sum(k => (double)p0[(i * 3) + k] * p1[(j * 3) + k]);
                s[i, j].item<float>().Should().BeApproximately((float)dot, (float)FloatBounds.Sum(3, 1, FloatBounds.Float32)); // a float32 dot of 3 unit-vector entries
            }
        }
    }

    [Fact]
    public void The_hierarchy_outlives_the_dispose_scope_and_the_callers_tensors()
    {
        ClusterHierarchy hierarchy;
        using (NewDisposeScope())
        {
            hierarchy = Build(Valid());
        }

        using (hierarchy)
        {
            hierarchy.Levels[0].Assignments.data<long>().ToArray().Should().Equal(FineAssignments);
            hierarchy.Levels[0].Parents!.data<long>().ToArray().Should().Equal(FineParents);
        }
    }

    [Fact]
    public void To_copies_to_another_device_and_keeps_the_values()
    {
        using var scope = NewDisposeScope();
        using var hierarchy = Build(Valid());
        using var moved = hierarchy.To(CPU);
        moved.Device.type.Should().Be(DeviceType.CPU);
        moved.Levels[1].Assignments.data<long>().ToArray().Should().Equal(CoarseAssignments);
        moved.Levels[0].Concentrations.data<float>().ToArray().Should().Equal(0.1f, 0.2f, 0.3f, 0.4f);
    }

    public static TheoryData<string, Func<Parts, Parts>, string> InvalidCases => new()
    {
        { "no levels", p => p with { Prototypes = [], Assignments = [], Concentrations = [], Parents = [] }, "*at least one level is required*" },
        { "wrong list lengths", p => p with { Parents = [] }, "*expected 2 assignment tensors, 2 concentration tensors and 1 parent tensors*got 2, 2 and 0*" },
        { "1-D prototypes", p => p with { Prototypes = [ones(4), p.Prototypes[1]] }, "*level 0 prototypes must be a non-empty 2-D floating-point tensor [k, d]; got shape [4]*" },
        { "integer prototypes", p => p with { Prototypes = [p.Prototypes[0], ones([2, 3], ScalarType.Int64)] }, "*level 1 prototypes must be a non-empty 2-D floating-point tensor*Int64*" },
        { "embedding size", p => p with { Prototypes = [p.Prototypes[0], UnitRows([1, 0], [0, 1])] }, "*level 1 prototypes have embedding size 2 but level 0 has 3*" },
        { "int32 assignments", p => p with { Assignments = [tensor(FineAssignments.Select(a => (int)a).ToArray()), p.Assignments[1]] }, "*level 0 assignments must be a non-empty 1-D int64 tensor [N]*Int32*" },
        { "different N", p => p with { Assignments = [p.Assignments[0], tensor(new long[] { 0, 1 })] }, "*level 1 assignments*same N at every level (N = 6 at level 0); got shape [2]*" },
        { "concentration length", p => p with { Concentrations = [ones(3), p.Concentrations[1]] }, "*level 0 concentrations must be a 1-D floating-point tensor [k] = [4]; got shape [3]*" },
        { "parent length", p => p with { Parents = [tensor(new long[] { 0, 1 })] }, "*level 0 parents must be a 1-D int64 tensor [k] = [4]; got shape [2]*" },
        { "assignment out of range", p => p with { Assignments = [tensor(new long[] { 0, 1, 1, 2, 3, 4 }), p.Assignments[1]] }, "*level 0 assignments must lie in [0, 4); found values from 0 to 4*" },
        { "negative parent", p => p with { Parents = [tensor(new long[] { 0, -1, 1, 1 })] }, "*level 0 parents must lie in [0, 2); found values from -1 to 1*" },
        { "not normalised", p => p with { Prototypes = [p.Prototypes[0] * 2, p.Prototypes[1]] }, "*level 0 prototypes must be L2-normalised*4 of 4 rows are not*normalize*" },
        { "zero concentration", p => p with { Concentrations = [tensor(new float[] { 0.1f, 0f, 0.3f, 0.4f }), p.Concentrations[1]] }, "*level 0 concentrations must be finite and > 0; 1 of 4 are not*" },
        { "NaN concentration", p => p with { Concentrations = [p.Concentrations[0], tensor(new float[] { float.NaN, 1 })] }, "*level 1 concentrations must be finite and > 0; 1 of 2 are not*" },
        { "broken tree", p => p with { Parents = [tensor(new long[] { 0, 1, 1, 1 })] }, "*do not compose through parents between level 0 and level 1: for 2 samples*first is sample 1 (a_0 = 1, parent = 1, a_1 = 0)*" },
    };

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void Invalid_inputs_are_rejected_with_a_plain_message(string name, Func<Parts, Parts> corrupt, string message)
    {
        using var scope = NewDisposeScope();
        var act = () => Build(corrupt(Valid()));
        act.Should().Throw<ArgumentException>(name).WithMessage("The cluster hierarchy is invalid:*").WithMessage(message);
    }

    [Fact]
    public void Every_problem_is_reported_at_once()
    {
        using var scope = NewDisposeScope();
        var parts = Valid() with { Concentrations = [ones(3), ones(1)], Parents = [tensor(new long[] { 0 })] };
        var act = () => Build(parts);
        act.Should().Throw<ArgumentException>()
            .WithMessage("*level 0 concentrations*").WithMessage("*level 0 parents*").WithMessage("*level 1 concentrations*");
    }
}
