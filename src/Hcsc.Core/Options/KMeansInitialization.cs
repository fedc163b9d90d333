namespace Hcsc.Core.Options;

/// <summary>How k-means (<see cref="KMeansOptions.Initialization"/>) chooses the starting centroids of each restart.</summary>
public enum KMeansInitialization
{
    /// <summary>k distinct training points drawn uniformly at random (what faiss does).</summary>
    RandomPoints,

    /// <summary>k-means++: the first centre uniformly, each next one with probability proportional to its squared distance to the nearest chosen centre.</summary>
    KMeansPlusPlus,
}
