namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>What an HCSC epoch's hierarchical k-means clusters (<c>--cluster-on</c>; <see cref="PretrainSettings.ClusterOn"/>).</summary>
public enum ClusterInput
{
    /// <summary>The reference's: every training image embedded by the current key encoder under the evaluation view.</summary>
    Pass,

    /// <summary>The keys the training steps computed, the newest of each image (<see cref="Clustering.KeyBank"/>).</summary>
    Keys,
}
