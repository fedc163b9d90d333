using System.Runtime.Intrinsics;
using Hcsc.Losses.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>The CPU kernels behind the objective: Bernoulli rows against thresholds, and masked row sums with their gradient.</summary>
public class KernelTests
{
    [Fact]
    public void Host_masks_follow_the_thresholds_and_do_not_depend_on_the_thread_count_or_on_how_rows_are_given()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var table = rand(new long[] { 9, 21 }, generator: g);                 // 21 columns: two full lanes of 8 and a tail of 5
        var rows = tensor(new long[] { 4, 0, 8, 4, 2 });
        int threads = get_num_threads();
        try
        {
            set_num_threads(1);
            var (single, singleCounts) = BernoulliRows.SampleOnHost([new ThresholdTable(table, rows), new ThresholdTable(table, null)], 5, 77);
            set_num_threads(2);
            var (masks, counts) = BernoulliRows.SampleOnHost([new ThresholdTable(table, rows), new ThresholdTable(table, null)], 5, 77);
            masks.dtype.Should().Be(ScalarType.Bool);
            masks.shape.Should().Equal(2, 5, 21);
            masks.eq(single).all().item<bool>().Should().BeTrue();
            counts.eq(singleCounts).all().item<bool>().Should().BeTrue();
            counts.eq(masks.sum(2).to(ScalarType.Float32)).all().item<bool>().Should().BeTrue();

            // Rows given by index read the same stream as the gathered rows; float64 thresholds compare the same uniforms.
            var gathered = BernoulliRows.SampleOnHost([new ThresholdTable(table.index_select(0, rows).contiguous(), null)], 5, 77).Masks;
            gathered[0].eq(masks[0]).all().item<bool>().Should().BeTrue();
            var wide = BernoulliRows.SampleOnHost([new ThresholdTable(table.to(ScalarType.Float64), rows)], 5, 77).Masks;
            wide[0].eq(masks[0]).all().item<bool>().Should().BeTrue();

            // A threshold of 0 keeps everything but u = 0 exactly; a threshold of 1 keeps nothing.
            var extremes = BernoulliRows.SampleOnHost([new ThresholdTable(zeros(3, 13), null), new ThresholdTable(ones(3, 13), null)], 3, 5).Masks;
            extremes[1].any().item<bool>().Should().BeFalse();
            extremes[0].to(ScalarType.Float32).mean().item<float>().Should().BeGreaterThan(0.99f);
        }
        finally
        {
            set_num_threads(threads);
        }
    }

    [Fact]
    public void Host_masks_are_drawn_from_the_generator_and_change_with_it()
    {
        using var scope = NewDisposeScope();
        var table = full(4, 64, 0.5f);
        var a = BernoulliRows.Sample([new ThresholdTable(table, null)], 4, new Generator(11)).Masks;
        var b = BernoulliRows.Sample([new ThresholdTable(table, null)], 4, new Generator(11)).Masks;
        var c = BernoulliRows.Sample([new ThresholdTable(table, null)], 4, new Generator(12)).Masks;
        a.eq(b).all().item<bool>().Should().BeTrue();
        a.eq(c).all().item<bool>().Should().BeFalse();
        var g = new Generator(11);
        var first = BernoulliRows.Sample([new ThresholdTable(table, null)], 4, g).Masks;
        var second = BernoulliRows.Sample([new ThresholdTable(table, null)], 4, g).Masks;
        first.eq(second).all().item<bool>().Should().BeFalse("each call draws a fresh seed");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Keep_rates_follow_one_minus_the_threshold_and_neighbours_are_uncorrelated(bool onHost)
    {
        using var scope = NewDisposeScope();
        const long rowCount = 400, columns = 1000;
        var ladder = linspace(0.05, 0.95, columns).unsqueeze(0).expand(rowCount, columns);   // column j: threshold t_j
        // A transposed copy is not contiguous, so it takes the torch path.
        var thresholds = onHost ? ladder.contiguous() : ladder.t().contiguous().t();
        var tables = new[] { new ThresholdTable(thresholds, null) };
        BernoulliRows.CanRunOnHost(tables).Should().Be(onHost);
        var mask = BernoulliRows.Sample(tables, rowCount, new Generator(5)).Masks[0].to(ScalarType.Float64);   // [rows, columns]

        // Per block of 100 columns (thresholds within ±0.045), the observed rate against the expected mean rate.
        for (long start = 0; start < columns; start += 100)
        {
            double expected = 1 - ladder[0].narrow(0, start, 100).to(ScalarType.Float64).mean().item<double>();
            double observed = mask.narrow(1, start, 100).mean().item<double>();
            double sigma = Math.Sqrt(0.25 / (rowCount * 100));
            observed.Should().BeApproximately(expected, 5 * sigma);
        }

        // Neighbouring columns (other lanes / the next call) and rows (other streams) are uncorrelated.
        var centred = mask.sub(mask.mean(new long[] { 0 }, keepdim: true));
        double scale = centred.pow(2).mean().item<double>();
        double nextColumn = centred.narrow(1, 0, columns - 1).mul(centred.narrow(1, 1, columns - 1)).mean().item<double>() / scale;
        double eighthColumn = centred.narrow(1, 0, columns - 8).mul(centred.narrow(1, 8, columns - 8)).mean().item<double>() / scale;
        double nextRow = centred.narrow(0, 0, rowCount - 1).mul(centred.narrow(0, 1, rowCount - 1)).mean().item<double>() / scale;
        double bound = 5 / Math.Sqrt(rowCount * (columns - 8));
        nextColumn.Should().BeInRange(-bound, bound);
        eighthColumn.Should().BeInRange(-bound, bound);
        nextRow.Should().BeInRange(-bound, bound);
    }

    [Fact]
    public void The_vector_exponential_is_accurate_to_a_few_ulp_and_underflows_to_zero()
    {
        for (double x = -100; x <= 0; x += 0.0137)
        {
            float got = VectorExp.Exp(Vector256.Create((float)x)).GetElement(3);
            double expected = Math.Exp((float)x);
            if (x < -87.34)
            {
                got.Should().Be(0f);
            }
            else
            {
                Math.Abs(got - expected).Should().BeLessThanOrEqualTo(4e-7 * expected, $"at x = {x}");
            }
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32, true)]
    [InlineData(ScalarType.Float32, false)]
    [InlineData(ScalarType.Float64, true)]
    [InlineData(ScalarType.Float64, false)]
    public void Queue_cross_entropies_and_their_gradients_match_the_formulas(ScalarType dtype, bool zeroLogit)
    {
        // A log-sum-exp over 1 + 19 logits of size ≤ 30 (the positive of row 1), then a subtraction.
        double tolerance = FloatBounds.Sum(1 + 19, 30, LossFixture.UnitRoundoff(dtype));
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        const int rows = 5, levels = 2, columns = 19;                          // two SIMD lanes and a tail of 3
        var logits = randn(new long[] { rows, columns }, dtype: dtype, generator: g).mul(4);
        var positive = randn(new long[] { rows }, dtype: dtype, generator: g).mul(4);
        positive[1] = tensor(-30.0, dtype: dtype);                              // a row whose shift is 0 and not the positive
        var masks = rand(new long[] { levels, rows, columns }, generator: g).gt(0.4);
        var upstream = randn(new long[] { rows, 1 + levels }, dtype: dtype, generator: g);
        QueueCrossEntropy.OnHost(logits).Should().BeTrue();

        var x = logits.clone().requires_grad_(true);
        var p = positive.clone().requires_grad_(true);
        var (loss, top1) = QueueCrossEntropy.Compute(x, p, masks, zeroLogit);
        loss.mul(upstream).sum().backward();

        // Naive double-precision values, and autograd through a plain tensor expression for the gradients.
        var xs = LossFixture.Rows(logits);
        var ps = LossFixture.Values(positive);
        var m = masks.to(ScalarType.Float64).data<double>().ToArray();
        var got = LossFixture.Rows(loss);
        for (int n = 0; n < rows; n++)
        {
            double infoNce = Math.Log(Math.Exp(ps[n]) + xs[n].Sum(Math.Exp)) - ps[n];
            got[n][0].Should().BeApproximately(infoNce, tolerance);
            for (int l = 0; l < levels; l++)
            {
                var kept = Enumerable.Range(0, columns).Where(j => m[(((l * rows) + n) * columns) + j] > 0).ToArray();
                double unselected = zeroLogit ? columns - kept.Length : 0;
                double expected = Math.Log(Math.Exp(ps[n]) + kept.Sum(j => Math.Exp(xs[n][j])) + unselected) - ps[n];
                got[n][1 + l].Should().BeApproximately(expected, tolerance);
            }

            top1[n].item<bool>().Should().Be(ps[n] >= xs[n].Max());
        }

        var xr = logits.clone().requires_grad_(true);
        var pr = positive.clone().requires_grad_(true);
        var terms = new List<Tensor> { cat([pr.unsqueeze(1), xr], 1).logsumexp(1).sub(pr) };
        for (int l = 0; l < levels; l++)
        {
            var masked = where(masks[l], xr, zeroLogit ? zeros(1, dtype: dtype) : full(1, double.NegativeInfinity, dtype: dtype));
            terms.Add(cat([pr.unsqueeze(1), masked], 1).logsumexp(1).sub(pr));
        }

        stack(terms, 1).mul(upstream).sum().backward();
        double gradientTolerance = (1 + levels) * upstream.abs().max().to(ScalarType.Float64).item<double>() * tolerance; // Σ_terms upstream · (softmax − one-hot)
        x.grad!.sub(xr.grad!).abs().max().to(ScalarType.Float64).item<double>().Should().BeLessThan(gradientTolerance);
        p.grad!.sub(pr.grad!).abs().max().to(ScalarType.Float64).item<double>().Should().BeLessThan(gradientTolerance);
    }

    [Theory]
    [InlineData(ScalarType.Float32, true)]
    [InlineData(ScalarType.Float32, false)]
    [InlineData(ScalarType.Float64, true)]
    [InlineData(ScalarType.Float64, false)]
    public void Terms_far_below_the_row_maximum_stay_exact(ScalarType dtype, bool zeroLogit)
    {
        // Row 0: every logit at −100 (a zero logit of docs/method.md R1 would be the largest term). Row 1: the largest logits (+90) are
        // never kept, the kept ones sit at 0 and the positive at −50 (exclusion must not lose them). Row 2: ordinary.
        using var scope = NewDisposeScope();
        const int columns = 21;
        var logits = zeros(new long[] { 3, columns }, dtype: dtype);
        logits[0].fill_(-100.0);
        logits[1].narrow(0, 0, 3).fill_(90.0);
        logits[2].copy_(randn(new long[] { columns }, dtype: dtype, generator: new Generator(4)));
        var positive = tensor(new[] { -100.0, -50.0, 0.5 }).to(dtype);
        var masks = ones(new long[] { 1, 3, columns }, dtype: ScalarType.Bool);
        masks[0, 0, 4] = tensor(false);
        masks[0, 1].narrow(0, 0, 3).fill_(false);
        masks[0, 2, 7] = tensor(false);
        var upstream = tensor(new[] { 1.0, 0.5, -0.7, 2.0, 1.5, 0.3 }).reshape(3, 2).to(dtype);

        var x = logits.clone().requires_grad_(true);
        var p = positive.clone().requires_grad_(true);
        var (loss, _) = QueueCrossEntropy.Compute(x, p, masks, zeroLogit);
        loss.mul(upstream).sum().backward();

        // The reference: the same terms in float64 tensor operations, each log-sum-exp with its own shift.
        var xr = logits.to(ScalarType.Float64).requires_grad_(true);
        var pr = positive.to(ScalarType.Float64).requires_grad_(true);
        var infoNce = cat([pr.unsqueeze(1), xr], 1).logsumexp(1).sub(pr);
        var masked = where(masks[0], xr, zeroLogit ? zeros(1, dtype: ScalarType.Float64) : full(1, double.NegativeInfinity, dtype: ScalarType.Float64));
        var icsc = cat([pr.unsqueeze(1), masked], 1).logsumexp(1).sub(pr);
        var expected = stack([infoNce, icsc], 1);
        expected.mul(upstream.to(ScalarType.Float64)).sum().backward();

        double tolerance = FloatBounds.Sum(1 + columns, 100, LossFixture.UnitRoundoff(dtype)); // logits ≤ 100 in size
        double gradientTolerance = 2 * 2.0 * tolerance; // two terms, |upstream| ≤ 2
        loss.to(ScalarType.Float64).isfinite().all().item<bool>().Should().BeTrue();
        loss.to(ScalarType.Float64).sub(expected).abs().max().item<double>().Should().BeLessThan(tolerance);
        x.grad!.to(ScalarType.Float64).sub(xr.grad!).abs().max().item<double>().Should().BeLessThan(gradientTolerance);
        p.grad!.to(ScalarType.Float64).sub(pr.grad!).abs().max().item<double>().Should().BeLessThan(gradientTolerance);
    }

    [Fact]
    public void A_non_contiguous_upstream_gradient_gives_the_same_gradients()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(12);
        var logits = randn(new long[] { 4, 19 }, generator: g);
        var positive = randn(new long[] { 4 }, generator: g);
        var masks = rand(new long[] { 2, 4, 19 }, generator: g).gt(0.5);
        var upstream = randn(new long[] { 3, 4 }, generator: g);                   // [1 + L, B], used transposed

        var a = logits.clone().requires_grad_(true);
        QueueCrossEntropy.Compute(a, positive, masks, true).Loss.mul(upstream.t().contiguous()).sum().backward();
        var b = logits.clone().requires_grad_(true);
        QueueCrossEntropy.Compute(b, positive, masks, true).Loss.t().mul(upstream).sum().backward();   // gradient arrives transposed
        a.grad!.sub(b.grad!).abs().max().item<float>().Should().BeLessThan(1e-6f);
    }

    [Fact]
    public void Thresholds_of_an_offset_view_and_out_of_range_rows()
    {
        using var scope = NewDisposeScope();
        var big = rand(new long[] { 12, 21 }, generator: new Generator(6));
        var view = big.narrow(0, 2, 9);                                        // contiguous, storage offset 42
        var rows = tensor(new long[] { 4, 0, 8 });
        var fromView = BernoulliRows.SampleOnHost([new ThresholdTable(view, rows)], 3, 77).Masks;
        var fromCopy = BernoulliRows.SampleOnHost([new ThresholdTable(view.clone(), rows)], 3, 77).Masks;
        fromView.eq(fromCopy).all().item<bool>().Should().BeTrue();

        var act = () => BernoulliRows.SampleOnHost([new ThresholdTable(view, tensor(new long[] { 4, 9, 0 }))], 3, 77);
        act.Should().Throw<ArgumentException>().WithMessage("*[0, 9)*entry 1 is 9*");
    }
}
