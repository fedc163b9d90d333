namespace Hcsc.Core.Options;

/// <summary>
/// Hierarchical k-means (docs/method.md §2): the levels and the concentration clip, plus the settings of every
/// level's k-means, inherited from <see cref="KMeansOptions"/> (one declaration and one default each). The
/// configuration section <c>Hcsc:Clustering</c> (<see cref="HcscOptions.Clustering"/>), e.g. <c>Clustering:Restarts</c>;
/// <c>HierarchicalKMeans</c> (package <c>Hcsc.Clustering</c>) takes it as is. The rules are
/// <see cref="HcscOptionsValidator.Problems(ClusteringOptions)"/>.
/// </summary>
public sealed class ClusteringOptions : KMeansOptions
{
    /// <summary>k_l: prototypes per level, finest first, strictly decreasing, each at least 2. Default 3000, 2000, 1000.</summary>
    public int[] NumClusters { get; set; } = [3000, 2000, 1000];

    /// <summary>The default of <see cref="ConcentrationLowPercentile"/>: 10.</summary>
    public const double DefaultConcentrationLowPercentile = 10;

    /// <summary>The default of <see cref="ConcentrationHighPercentile"/>: 90.</summary>
    public const double DefaultConcentrationHighPercentile = 90;

    /// <summary>Lower percentile of the concentration clip. Default <see cref="DefaultConcentrationLowPercentile"/> (10).</summary>
    public double ConcentrationLowPercentile { get; set; } = DefaultConcentrationLowPercentile;

    /// <summary>Upper percentile of the concentration clip. Default <see cref="DefaultConcentrationHighPercentile"/> (90).</summary>
    public double ConcentrationHighPercentile { get; set; } = DefaultConcentrationHighPercentile;

    /// <summary>
    /// A start for small data sets (thousands to about a hundred thousand samples, about ten classes): 200 / 50 / 10
    /// prototypes and 2 restarts, what the sample's Fashion-MNIST preset uses. The defaults (3000 / 2000 / 1000) are the
    /// reference's for ImageNet's 1.28 M images, about 430 samples a finest prototype; keep k_0 well below N and well
    /// above the batch size (PCSC needs prototypes that are no sample's positive in the batch).
    /// </summary>
    public static ClusteringOptions SmallData() => new() { NumClusters = [200, 50, 10], Restarts = 2 };

    /// <summary>A copy of these options, with its own <see cref="NumClusters"/> array.</summary>
    public override ClusteringOptions Clone()
    {
        var copy = (ClusteringOptions)base.Clone();
        copy.NumClusters = [.. NumClusters ?? []];
        return copy;
    }
}
