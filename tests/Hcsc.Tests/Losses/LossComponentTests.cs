using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Losses;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>InfoNCE, ICSC and PCSC against values worked out by hand.</summary>
public class LossComponentTests
{
    // d = 2, τ = 0.5. q = (1, 0), k = (0.6, 0.8): x_pos = 0.6 / 0.5 = 1.2.
    // queue (1, 0), (0, 1), (−1, 0): x_neg = 2, 0, −2.
    private static Tensor Q => tensor(new double[] { 1, 0 }).reshape(1, 2);

    private static Tensor K => tensor(new double[] { 0.6, 0.8 }).reshape(1, 2);

    private static Tensor Queue => tensor(new double[] { 1, 0, 0, 1, -1, 0 }).reshape(3, 2);

    [Fact]
    public void InfoNce_matches_the_hand_computed_value()
    {
        using var scope = NewDisposeScope();
        double expected = Math.Log(Math.Exp(1.2) + Math.Exp(2) + Math.Exp(0) + Math.Exp(-2)) - 1.2; // 1.271864
        InfoNceLoss.Compute(Q, K, Queue, 0.5).item<double>().Should().BeApproximately(expected, 1e-12);
        expected.Should().BeApproximately(1.271864, 1e-6);
    }

    [Theory]
    [InlineData(UnselectedNegativeHandling.ZeroLogit, 0.496616)] // log(e^1.2 + e^0 [z1 zeroed] + e^0 + e^−2) − 1.2
    [InlineData(UnselectedNegativeHandling.Exclude, 0.294129)]   // log(e^1.2 + e^0 + e^−2) − 1.2
    public void Icsc_treats_an_unselected_negative_as_the_mode_says(UnselectedNegativeHandling handling, double expected)
    {
        using var scope = NewDisposeScope();
        var mask = tensor(new double[] { 0, 1, 1 }).reshape(1, 3);
        IcscLoss.Compute(Q, K, Queue, mask, 0.5, handling).item<double>().Should().BeApproximately(expected, 1e-6);
        IcscLoss.Compute(Q, K, Queue, mask.gt(0.5), 0.5, handling).item<double>().Should().BeApproximately(expected, 1e-6);
    }

    [Fact]
    public void Icsc_with_every_negative_selected_is_InfoNce()
    {
        using var scope = NewDisposeScope();
        var all = ones(1, 3, dtype: ScalarType.Float64);
        foreach (var handling in new[] { UnselectedNegativeHandling.ZeroLogit, UnselectedNegativeHandling.Exclude })
        {
            IcscLoss.Compute(Q, K, Queue, all, 0.5, handling).item<double>().Should().BeApproximately(InfoNceLoss.Compute(Q, K, Queue, 0.5).item<double>(), 1e-12);
        }
    }

    // One level, prototypes (1,0), (0,1), (−1,0), φ = 0.5, 0.25, 1. Samples assigned 0 and 2 (max id 2).
    private static ClusterHierarchy PrototypeLevel() => ClusterHierarchy.FromTensors(
        [tensor(new double[] { 1, 0, 0, 1, -1, 0 }).reshape(3, 2)],
        [tensor(new long[] { 0, 2 })],
        [tensor(new double[] { 0.5, 0.25, 1.0 })],
        []);

    // q = (0.6, 0.8), positive prototype 0: logit 0.6 / 0.5 = 1.2; candidates 1 (0.8 / 0.25 = 3.2) and 2 (−0.6 / 1 = −0.6).
    [Theory]
    [InlineData(UnselectedNegativeHandling.ZeroLogit, false, new double[] { 1.2, 0, -0.6 })]
    [InlineData(UnselectedNegativeHandling.Exclude, false, new double[] { 1.2, -0.6 })]
    [InlineData(UnselectedNegativeHandling.ZeroLogit, true, new double[] { 1.2 })] // docs/method.md R3: prototype 2 (the max id) is no candidate; 1 is unselected → 0
    public void Pcsc_matches_the_hand_computed_value(UnselectedNegativeHandling handling, bool offByOne, double[] logitsLeft)
    {
        using var scope = NewDisposeScope();
        using var hierarchy = PrototypeLevel();
        var labels = tensor(new long[] { 0 });
        var candidates = PrototypeSelector.Candidates(labels, hierarchy.Levels[0], offByOne);
        candidates.data<bool>().ToArray().Should().Equal(false, true, !offByOne);
        var mask = tensor(new double[] { 0, 0, 1 }).reshape(1, 3); // prototype 1 unselected, 2 selected
        var terms = offByOne ? new List<double>(logitsLeft) { 0 } : [.. logitsLeft];
        double expected = Math.Log(terms.Sum(Math.Exp)) - 1.2;
        var q = K; // (0.6, 0.8)
        PcscLoss.Compute(q, labels, hierarchy.Levels[0], mask, candidates, handling).item<double>().Should().BeApproximately(expected, 1e-12);
    }

    [Fact]
    public void Pcsc_with_every_candidate_selected_uses_all_but_the_batch_positives()
    {
        using var scope = NewDisposeScope();
        using var hierarchy = PrototypeLevel();
        var labels = tensor(new long[] { 0, 0 });
        var candidates = PrototypeSelector.Candidates(labels, hierarchy.Levels[0], reproduceReferenceOffByOne: false);
        var q = tensor(new double[] { 0.6, 0.8, 0, 1 }).reshape(2, 2);
        var mask = ones(2, 3, dtype: ScalarType.Float64);
        double first = Math.Log(Math.Exp(1.2) + Math.Exp(3.2) + Math.Exp(-0.6)) - 1.2;
        double second = Math.Log(Math.Exp(0) + Math.Exp(4) + Math.Exp(0)) - 0;
        PcscLoss.Compute(q, labels, hierarchy.Levels[0], mask, candidates, UnselectedNegativeHandling.ZeroLogit).item<double>()
            .Should().BeApproximately((first + second) / 2, 1e-12);
    }
}
