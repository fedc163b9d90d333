using Hcsc.Clustering;
using Hcsc.Core.Options;
using static Hcsc.Tests.Clustering.ClusteringTestData;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

public class HierarchicalKMeansTests
{
    private static readonly ClusteringOptions Options = new() { NumClusters = [16, 6, 3], Iterations = 6, Restarts = 2 };

    [Fact]
    public void The_hierarchy_follows_spec_section_1()
    {
        var (points, _) = Blobs(600, 8, 12, 2.0, 1.0, seed: 4);
        using var raw = ToTensor(points);
        using var x = nn.functional.normalize(raw, dim: 1);
        using var result = new HierarchicalKMeans(Options, 0.2).Fit(x);
        var hierarchy = result.Hierarchy;

        hierarchy.ClusterCounts.Should().Equal(16L, 6L, 3L);
        hierarchy.ConcentrationTemperature.Should().Be(0.2, "the hierarchy records the τ its concentrations were rescaled for");
        result.Levels.Select(l => l.K).Should().Equal(16, 6, 3);
        result.Levels.Select(l => l.Points).Should().Equal(600L, 16L, 6L);

        var levelPoints = ToDoubles(x);
        var memberOf = new long[3][];
        for (int l = 0; l < 3; l++)
        {
            var level = hierarchy.Levels[l];

            // Step 2: every point of the level goes to its nearest raw centre (brute force, double).
            var centres = ToDoubles(result.RawCentroids[l]);
            var nearest = BruteForce(levelPoints, centres);
            var own = l == 0 ? ToLongs(level.Assignments) : ToLongs(hierarchy.Levels[l - 1].Parents!);
            for (int i = 0; i < own.Length; i++)
            {
                if (nearest.Gap[i] > 1e-4) // ≫ the float32 error of a distance ‖x‖² + ‖c‖² − 2x·c over d = 8, FloatBounds.Sum(11, 4, …) ≈ 6e-6
                {
                    own[i].Should().Be(nearest.Index[i], $"level {l} point {i}");
                }
            }

            // Step 3: a_l(i) = parent_{l-1}(a_{l-1}(i)).
            memberOf[l] = ToLongs(level.Assignments);
            if (l > 0)
            {
                var parents = ToLongs(hierarchy.Levels[l - 1].Parents!);
                memberOf[l].Should().Equal(memberOf[l - 1].Select(c => parents[c]));
            }

            // Step 4: φ from the members' distances to the raw centres (independent double computation).
            var expectedPhi = Concentrations(nearest.Distance, own, centres.GetLength(0), 0.2);
            var phi = ToDoubleArray(level.Concentrations);
            for (int c = 0; c < phi.Length; c++)
            {
                phi[c].Should().BeApproximately(expectedPhi[c], 1e-4, $"level {l} cluster {c}");
            }

            // Step 5: prototypes are the normalised raw centres.
            var prototypes = ToDoubles(level.Prototypes);
            for (int c = 0; c < centres.GetLength(0); c++)
            {
                double norm = Math.Sqrt(Enumerable.Range(0, 8).Sum(j => centres[c, j] * centres[c, j]));
                for (int j = 0; j < 8; j++)
                {
                    prototypes[c, j].Should().BeApproximately(centres[c, j] / norm, FloatBounds.Sum(8, 1, FloatBounds.Float32)); // a float32 norm over d = 8
                }
            }

            levelPoints = prototypes;
        }

        // Step 6: S_l = C_l C_{l+1}ᵀ.
        using var similarity = hierarchy.Levels[0].Prototypes.mm(hierarchy.Levels[1].Prototypes.t());
        hierarchy.Levels[0].SimilarityToParents!.allclose(similarity, rtol: 0, atol: FloatBounds.Sum(8, 1, FloatBounds.Float32)).Should().BeTrue(); // float32 dots over d = 8
    }

    [Fact]
    public void A_fixed_configuration_is_deterministic_on_cpu()
    {
        var (points, _) = Blobs(300, 4, 8, 2.0, 1.0, seed: 6);
        using var x = ToTensor(points);
        using var first = new HierarchicalKMeans(Options, 0.2).Fit(x);
        using var second = new HierarchicalKMeans(Options, 0.2).Fit(x);
        for (int l = 0; l < 3; l++)
        {
            first.Hierarchy.Levels[l].Prototypes.allclose(second.Hierarchy.Levels[l].Prototypes, 0, 0).Should().BeTrue();
            ToLongs(first.Hierarchy.Levels[l].Assignments).Should().Equal(ToLongs(second.Hierarchy.Levels[l].Assignments));
        }
    }

    [Fact]
    public void Progress_covers_every_level()
    {
        var (points, _) = Blobs(200, 4, 8, 2.0, 1.0, seed: 6);
        using var x = ToTensor(points);
        var levels = new HashSet<int>();
        using var result = new HierarchicalKMeans(Options, 0.2).Fit(x, new Collect(p => levels.Add(p.Level)));
        levels.Should().BeEquivalentTo(new[] { 0, 1, 2 });
    }

    [Fact]
    public void Bad_settings_and_input_are_rejected_before_any_work()
    {
        FluentActions.Invoking(() => new HierarchicalKMeans(new ClusteringOptions { NumClusters = [10, 10] }, 0.2)).Should().Throw<ArgumentException>().WithMessage("*strictly decreasing*");
        FluentActions.Invoking(() => new HierarchicalKMeans(new ClusteringOptions(), double.NaN)).Should().Throw<ArgumentException>().WithMessage("*Temperature (τ) must be a finite number > 0, got NaN*");
        using var few = randn(10, 4);
        FluentActions.Invoking(() => new HierarchicalKMeans(Options, 0.2).Fit(few)).Should().Throw<ArgumentException>()
            .WithMessage("The finest level has k = 16 prototypes but there are only 10 embeddings. Lower ClusteringOptions.NumClusters; ClusteringOptions.SmallData() (200 / 50 / 10)*");
    }

    [Fact]
    public void The_small_data_preset_is_valid_and_clusters_a_few_thousand_points()
    {
        var small = ClusteringOptions.SmallData();
        small.NumClusters.Should().Equal(200, 50, 10);
        HcscOptionsValidator.Problems(small).Should().BeEmpty();
        var (points, _) = Blobs(2000, 8, 10, 2.0, 1.0, seed: 5);
        using var raw = ToTensor(points);
        using var x = nn.functional.normalize(raw, dim: 1);
        using var result = new HierarchicalKMeans(small, 0.2).Fit(x);
        result.Hierarchy.ClusterCounts.Should().Equal(200L, 50L, 10L);
    }

    /// <summary>Spec §1 step 4 written out naively in double precision, with numpy's linear percentile.</summary>
    private static double[] Concentrations(double[] squared, long[] members, int k, double tau)
    {
        var phi = new double[k];
        var count = new int[k];
        var sum = new double[k];
        for (int i = 0; i < members.Length; i++)
        {
            count[members[i]]++;
            sum[members[i]] += Math.Sqrt(squared[i]);
        }

        for (int c = 0; c < k; c++)
        {
            phi[c] = count[c] > 1 ? sum[c] / count[c] / Math.Log(count[c] + 10) : double.NaN;
        }

        double max = phi.Where(v => !double.IsNaN(v)).DefaultIfEmpty(1).Max();
        for (int c = 0; c < k; c++)
        {
            phi[c] = double.IsNaN(phi[c]) ? max : phi[c];
        }

        double low = Percentile(phi, 10), high = Percentile(phi, 90);
        var clipped = phi.Select(v => Math.Clamp(v, low, high)).ToArray();
        double mean = clipped.Average();
        return clipped.Select(v => tau * v / mean).ToArray();
    }

    private static double Percentile(double[] values, double p)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        double position = p / 100 * (sorted.Length - 1);
        int below = (int)Math.Floor(position);
        int above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + ((position - below) * (sorted[above] - sorted[below]));
    }

    private sealed class Collect(Action<ClusteringProgress> action) : IProgress<ClusteringProgress>
    {
        public void Report(ClusteringProgress value) => action(value);
    }
}
