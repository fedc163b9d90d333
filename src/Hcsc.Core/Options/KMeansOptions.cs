namespace Hcsc.Core.Options;

/// <summary>
/// Settings of one k-means level (squared-L2 Lloyd iterations with restarts): what <c>KMeans</c> (package
/// <c>Hcsc.Clustering</c>) takes, and what every level of hierarchical k-means uses (<see cref="ClusteringOptions"/>
/// adds the levels). Each setting is declared here once, with its default; the rules are
/// <see cref="HcscOptionsValidator.Problems(KMeansOptions)"/>.
/// </summary>
public class KMeansOptions
{
    /// <summary>The default of <see cref="ChunkBytes"/>: 32 MiB.</summary>
    public const long DefaultChunkBytes = 32L << 20;

    /// <summary>Lloyd iterations per restart (assignment + centroid update). Default 20.</summary>
    public int Iterations { get; set; } = 20;

    /// <summary>Restarts; the one with the lowest final training objective wins. Default 5, as the reference's faiss clustering.</summary>
    public int Restarts { get; set; } = 5;

    /// <summary>
    /// Seed: restart r uses a generator seeded with <c>Seed + r · 1000003</c>; in hierarchical k-means, level l is
    /// clustered with seed <c>Seed + l</c> (docs/method.md §2, step 1: the level's index). Default 0.
    /// </summary>
    public long Seed { get; set; }

    /// <summary>The training subsample has at most this many points per centroid (k · this); all points are assigned afterwards. Default 1000.</summary>
    public int MaxPointsPerCentroid { get; set; } = 1000;

    /// <summary>Fewer than k · this points draws a warning. Default 10.</summary>
    public int MinPointsPerCentroid { get; set; } = 10;

    /// <summary>Initialisation of each restart. Default <see cref="KMeansInitialization.RandomPoints"/> (as faiss).</summary>
    public KMeansInitialization Initialization { get; set; } = KMeansInitialization.RandomPoints;

    /// <summary>
    /// Bytes of the temporary distance block <c>[rows, k]</c> float32 computed at once; the number of
    /// rows per chunk is this / (4 · k), at least 1. Bounds the working memory of every distance pass.
    /// Default <see cref="DefaultChunkBytes"/> (32 MiB).
    /// </summary>
    public long ChunkBytes { get; set; } = DefaultChunkBytes;

    /// <summary>
    /// Skip distance computations that provably cannot change a point's assignment (Hamerly bounds over groups of about 50 centres, as Yinyang k-means' global filter);
    /// the assignments are the same as plain Lloyd's up to float rounding on exact ties. Only used when
    /// there are at least 8 training points per centre (below that the k × k centre distances the
    /// bounds need cost as much as the search they save). Default true.
    /// </summary>
    public bool UseBounds { get; set; } = true;

    /// <summary>A copy of these options (of the same type).</summary>
    public virtual KMeansOptions Clone() => (KMeansOptions)MemberwiseClone();
}
