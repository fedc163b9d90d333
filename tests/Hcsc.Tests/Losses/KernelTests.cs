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

    [Theory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.Float64, 1e-12)]
    public void Masked_row_sums_and_their_gradient_match_the_naive_sums_on_both_paths(ScalarType dtype, double tolerance)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        const int rows = 5, sets = 3, columns = 19;
        var values = randn(new long[] { rows, columns }, dtype: dtype, generator: g);
        var masks = rand(new long[] { sets, rows, columns }, generator: g).gt(0.4);
        var weights = randn(new long[] { rows, sets }, dtype: dtype, generator: g);
        MaskedRowSum.OnHost(values, masks).Should().BeTrue();
        var v = LossFixture.Rows(values);
        var w = LossFixture.Rows(weights);
        var m = masks.to(ScalarType.Float64).data<double>().ToArray();
        double Mask(int s, int n, int j) => m[(((s * rows) + n) * columns) + j];

        // The host kernels, then the batched product (values on a non-contiguous layout take that path).
        foreach (bool host in new[] { true, false })
        {
            var leaf = (host ? values.clone() : values.t().contiguous().t()).requires_grad_(true);
            MaskedRowSum.OnHost(leaf, masks).Should().Be(host);
            var sums = MaskedRowSum.Compute(leaf, masks);
            sums.mul(weights).sum().backward();
            var got = LossFixture.Rows(sums);
            var grad = LossFixture.Rows(leaf.grad!);
            for (int n = 0; n < rows; n++)
            {
                for (int s = 0; s < sets; s++)
                {
                    double expected = Enumerable.Range(0, columns).Sum(j => Mask(s, n, j) * v[n][j]);
                    got[n][s].Should().BeApproximately(expected, tolerance * 10);
                }

                for (int j = 0; j < columns; j++)
                {
                    double expected = Enumerable.Range(0, sets).Sum(s => Mask(s, n, j) * w[n][s]);
                    grad[n][j].Should().BeApproximately(expected, tolerance * 10);
                }
            }
        }
    }
}
