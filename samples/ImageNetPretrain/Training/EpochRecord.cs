using System.Text.Json;
using System.Text.Json.Serialization;
using Hcsc.Samples.ImageNetPretrain.Evaluation;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// What a training epoch writes to <c>metrics.jsonl</c>, one line (docs/cli.md lists the fields). Epoch numbers here are
/// 0-based, as everywhere in the records; the console and messages show <see cref="Numbering.Displayed"/> numbers. Fields of the
/// clustering are absent in warm-up epochs, the kNN fields in epochs without an evaluation.
/// </summary>
public sealed class EpochRecord
{
    /// <summary>The 0-based epoch.</summary>
    [JsonPropertyName("epoch")]
    public required int Epoch { get; init; }

    /// <summary>The learning rate of the epoch's steps.</summary>
    [JsonPropertyName("lr")]
    public required double LearningRate { get; init; }

    /// <summary>NMI / AMI / ARI of the epoch's clustering per level against the fine labels (then the coarse ones).</summary>
    [JsonPropertyName("nmi")]
    public IReadOnlyList<double>? Nmi { get; set; }

    /// <inheritdoc cref="Nmi"/>
    [JsonPropertyName("ami")]
    public IReadOnlyList<double>? Ami { get; set; }

    /// <inheritdoc cref="Nmi"/>
    [JsonPropertyName("ari")]
    public IReadOnlyList<double>? Ari { get; set; }

    /// <inheritdoc cref="Nmi"/>
    [JsonPropertyName("nmi_coarse")]
    public IReadOnlyList<double>? NmiCoarse { get; set; }

    /// <inheritdoc cref="Nmi"/>
    [JsonPropertyName("ami_coarse")]
    public IReadOnlyList<double>? AmiCoarse { get; set; }

    /// <inheritdoc cref="Nmi"/>
    [JsonPropertyName("ari_coarse")]
    public IReadOnlyList<double>? AriCoarse { get; set; }

    /// <summary>The epoch's clustering in all: embedding, k-means, the queue's selection cache.</summary>
    [JsonPropertyName("clustering_seconds")]
    public double? ClusteringSeconds { get; set; }

    /// <summary>Embedding the images the clustering needed (all of them with <c>--cluster-on Pass</c>).</summary>
    [JsonPropertyName("embedding_seconds")]
    public double? EmbeddingSeconds { get; set; }

    /// <summary>The images embedded for the clustering.</summary>
    [JsonPropertyName("embedded_images")]
    public int? EmbeddedImages { get; set; }

    /// <summary>Hierarchical k-means alone.</summary>
    [JsonPropertyName("kmeans_seconds")]
    public double? KMeansSeconds { get; set; }

    /// <summary>Prototypes without members, per level.</summary>
    [JsonPropertyName("empty_prototypes")]
    public IReadOnlyList<int>? EmptyPrototypes { get; set; }

    /// <summary>Managed bytes allocated per step (every thread, the data workers' too).</summary>
    [JsonPropertyName("managed_bytes_per_step")]
    public double? ManagedBytesPerStep { get; set; }

    /// <summary>
    /// The epoch's mean of every loss part and diagnostic of <see cref="EpochAccumulator"/> (<c>loss</c>,
    /// <c>loss_infonce</c>, <c>loss_icsc_0</c>, …, <c>instance_top1</c>, <c>acceptance_0</c>, …, <c>embedding_spread</c>),
    /// averaged over the ranks; written as fields of the record.
    /// </summary>
    [JsonExtensionData]
    public Dictionary<string, object> Means { get; init; } = [];

    /// <summary>Images that could not be decoded and were replaced this epoch.</summary>
    [JsonPropertyName("skipped_images")]
    public int SkippedImages { get; set; }

    /// <summary>Every step's loss (the mean over the ranks), from the epoch's first step even after a resume.</summary>
    [JsonPropertyName("step_losses")]
    public IReadOnlyList<double> StepLosses { get; set; } = [];

    /// <summary>The process's resident memory at the epoch's end.</summary>
    [JsonPropertyName("rss_mib")]
    public double RssMib { get; set; }

    /// <summary>The managed heap at the epoch's end.</summary>
    [JsonPropertyName("managed_mib")]
    public double ManagedMib { get; set; }

    /// <summary>Tensors created and not disposed on the training thread.</summary>
    [JsonPropertyName("live_tensors")]
    public long LiveTensors { get; set; }

    /// <summary>The whole epoch, clustering included.</summary>
    [JsonPropertyName("seconds")]
    public double Seconds { get; set; }

    /// <summary>Training steps only: images of the global batch per second.</summary>
    [JsonPropertyName("images_per_second")]
    public double ImagesPerSecond { get; set; }

    /// <summary>kNN top-1 (%) of an evaluation after this epoch (<c>--knn-every</c>).</summary>
    [JsonPropertyName("knn_top1")]
    public double? KnnTop1 { get; set; }

    /// <summary>The evaluation's time.</summary>
    [JsonPropertyName("evaluation_seconds")]
    public double? EvaluationSeconds { get; set; }

    /// <summary>The mean of part <paramref name="name"/> if the epoch recorded it.</summary>
    public double? Mean(string name) => Means.TryGetValue(name, out var value) && value is double d ? d : null;

    /// <summary>Sets the clustering quality against the fine and the coarse labels.</summary>
    public void SetClusteringQuality(ClusteringQuality fine, ClusteringQuality coarse)
    {
        ArgumentNullException.ThrowIfNull(fine);
        ArgumentNullException.ThrowIfNull(coarse);
        (Nmi, Ami, Ari) = fine.Nmi.Count > 0 ? (fine.Nmi, fine.Ami, fine.Ari) : (null, null, null);
        (NmiCoarse, AmiCoarse, AriCoarse) = coarse.Nmi.Count > 0 ? (coarse.Nmi, coarse.Ami, coarse.Ari) : (null, null, null);
    }

    /// <summary>Every number of the record by name (lists by name and index), as TensorBoard takes them; step losses and the epoch left out.</summary>
    public IEnumerable<(string Name, double Value)> Scalars()
    {
        var element = JsonSerializer.SerializeToElement(this, MetricsLog.Json);
        foreach (var field in element.EnumerateObject())
        {
            if (field.Name is "epoch" or "step_losses")
            {
                continue;
            }

            if (field.Value.ValueKind == JsonValueKind.Number)
            {
                yield return (field.Name, field.Value.GetDouble());
            }
            else if (field.Value.ValueKind == JsonValueKind.Array)
            {
                int l = 0;
                foreach (var item in field.Value.EnumerateArray())
                {
                    yield return ($"{field.Name}/{l++}", item.GetDouble());
                }
            }
        }
    }
}
