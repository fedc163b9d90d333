using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>Bad input is an <see cref="ArgumentException"/> that names the tensors and their shapes.</summary>
public class InputValidationTests
{
    private static void Throws(Action act, string pattern) => act.Should().Throw<ArgumentException>().WithMessage(pattern);

    [Fact]
    public void A_hierarchy_rescaled_for_another_temperature_is_refused_with_both_values()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        var levels = f.Hierarchy.Levels;
        using var tagged = ClusterHierarchy.FromTensors(
            levels.Select(l => l.Prototypes).ToArray(), levels.Select(l => l.Assignments).ToArray(),
            levels.Select(l => l.Concentrations).ToArray(), levels.Take(2).Select(l => l.Parents!).ToArray(), concentrationTemperature: 0.1);
        tagged.ConcentrationTemperature.Should().Be(0.1);
        f.Hierarchy.ConcentrationTemperature.Should().BeNull("a hierarchy built without τ does not claim one");
        using var moved = tagged.To(CPU);
        moved.ConcentrationTemperature.Should().Be(0.1, "a copy keeps it");

        var g = new Generator(1);
        using var other = new HcscObjective(new ObjectiveOptions { Temperature = 0.2 });
        Throws(() => other.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, tagged, g), "*rescaled for τ = 0.1*this objective uses τ = 0.2*Pass the same value to both*");
        other.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, g).Total.isfinite().item<bool>().Should().BeTrue("unknown τ is not checked");
        using var same = new HcscObjective(new ObjectiveOptions { Temperature = 0.1 });
        same.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, tagged, g).Total.isfinite().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void With_CheckUnitNorm_a_row_that_is_not_unit_norm_is_named_and_without_it_is_accepted()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        var g = new Generator(1);
        using var checking = new HcscObjective(new ObjectiveOptions { CheckUnitNorm = true });
        var scaled = f.Query.clone();
        scaled[2].mul_(1.5.ToScalar());
        checking.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, g).Total.isfinite().item<bool>().Should().BeTrue("the fixture's rows are unit-norm");
        Throws(() => checking.Compute(scaled, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, g), "query must hold unit-norm rows*row 2 of*has norm 1.5*nn.functional.normalize(x, dim: 1)*");
        Throws(() => checking.Compute(f.Query, f.Key.mul(0.5.ToScalar()), f.Queue, f.BatchIndices, f.Hierarchy, g), "key must hold unit-norm rows*norm 0.5*");
        Throws(() => checking.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, g, [f.Query, scaled]), "localQueries[1] must hold unit-norm rows*row 2*");

        using var lenient = new HcscObjective(new ObjectiveOptions());
        lenient.Compute(scaled, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, g).Total.isfinite().item<bool>().Should().BeTrue("the check is opt-in");
    }

    [Fact]
    public void The_objective_rejects_bad_shapes_dtypes_labels_and_empty_batches()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var objective = new HcscObjective();
        var g = new Generator(1);
        HcscLossResult Run(Tensor? q = null, Tensor? k = null, Tensor? z = null, Tensor? idx = null, Tensor[]? locals = null) =>
            objective.Compute(q ?? f.Query, k ?? f.Key, z ?? f.Queue, idx ?? f.BatchIndices, f.Hierarchy, g, locals);

        Throws(() => Run(q: f.Query.reshape(-1)), "*query*2-D*shape [12]*");
        Throws(() => Run(q: zeros(0, 3)), "*query*empty*shape [0, 3]*");
        Throws(() => Run(k: f.Key.narrow(0, 0, 3)), "*key*shape of query*shape [3, 3]*shape [4, 3]*");
        Throws(() => Run(k: f.Key.to(ScalarType.Float64)), "*key*dtype*Float64*Float32*");
        Throws(() => Run(z: randn(7, 5)), "*queue*shape [7, 5]*embedding size 5*shape [4, 3]*");
        Throws(() => Run(idx: f.BatchIndices.to(ScalarType.Int32)), "*batchIndices*int64*[4]*Int32*");
        Throws(() => Run(idx: f.BatchIndices.narrow(0, 0, 2)), "*batchIndices*[4]*shape [2]*");
        Throws(() => Run(idx: tensor(new long[] { 0, 1, 2, 10 })), "*batchIndices*[0, 10)*10*");
        Throws(() => Run(idx: tensor(new long[] { 0, -1, 2, 3 })), "*batchIndices*[0, 10)*-1*");
        Throws(() => Run(locals: [randn(4, 2)]), "*localQueries[0]*shape [4, 2]*");
        Throws(() => new HcscObjective(new ObjectiveOptions { Temperature = 0 }), "*Temperature*");

        var wide = nn.functional.normalize(randn(4, 5), dim: 1);
        Throws(() => objective.Compute(wide, wide, randn(7, 5), f.BatchIndices, f.Hierarchy, g), "*query*embedding size 5*3*");
    }

    [Fact]
    public void The_components_reject_bad_masks_and_labels()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        var level = f.Hierarchy.Levels[0];
        Throws(() => IcscLoss.Compute(f.Query, f.Key, f.Queue, ones(4, 6), 0.2, UnselectedNegativeHandling.ZeroLogit), "*mask*[4, 7]*shape [4, 6]*");
        Throws(() => InstanceSelector.AcceptanceProbabilities(f.Queue, tensor(new long[] { 0, 5 }), level), "*labels*[0, 5)*5*");
        Throws(() => InstanceSelector.AcceptanceProbabilities(f.Queue, tensor(Array.Empty<long>()), level), "*labels*non-empty*shape [0]*");
        Throws(() => InstanceSelector.AcceptanceProbabilities(f.Queue, tensor(new long[] { 0 }), level, zeros(3)), "*logNormalisers*[7]*shape [3]*");
        Throws(() => InstanceSelector.LogNormalisers(randn(2, 4), level), "*keys*embedding size 4*");
        var candidates = PrototypeSelector.Candidates(tensor(new long[] { 0 }), level, false);
        Throws(() => PcscLoss.Compute(f.Query, f.Hierarchy.Levels[0].Assignments.index_select(0, f.BatchIndices), level, ones(4, 4), candidates, UnselectedNegativeHandling.Exclude), "*mask*[4, 5]*shape [4, 4]*");
        Throws(() => PrototypeSelector.AcceptanceProbabilities(tensor(new long[] { 0 }), f.Hierarchy.Levels[2], f.Hierarchy.Levels[2], 0.2), "*below the top*");
        Throws(() => PrototypeSelector.SampleMask(ones(2, 5), ones(4, dtype: ScalarType.Bool), new Generator(1)), "*candidates*[5]*shape [4]*");
    }
}
