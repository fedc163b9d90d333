using System.Globalization;
using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Sums the loss components of an epoch on the device, step after step, without a device sync;
/// values reach the host only when a summary is printed or the epoch ends.
/// </summary>
public sealed class EpochAccumulator : IDisposable
{
    private readonly Dictionary<string, Tensor> _sums = new(StringComparer.Ordinal);
    private int _steps;

    /// <summary>
    /// Adds one step's result: total, InfoNCE, per-level ICSC / PCSC, acceptance ratios, accuracies, local terms; and the
    /// spread of its query embeddings (<see cref="EmbeddingSpread"/>, a scalar tensor) when given.
    /// </summary>
    public void Add(HcscLossResult result, Tensor? embeddingSpread = null)
    {
        if (embeddingSpread is not null)
        {
            Accumulate("embedding_spread", embeddingSpread);
        }

        Accumulate("loss", result.Total);
        Accumulate("loss_infonce", result.InfoNce);
        Accumulate("instance_top1", result.InstanceAccuracy);
        for (int l = 0; l < result.Instance.Count; l++)
        {
            Accumulate($"loss_icsc_{l}", result.Instance[l]);
        }

        for (int l = 0; l < result.Prototype.Count; l++)
        {
            Accumulate($"loss_pcsc_{l}", result.Prototype[l]);
        }

        for (int l = 0; l < result.AcceptanceRatio.Count; l++)
        {
            Accumulate($"acceptance_{l}", result.AcceptanceRatio[l]);
        }

        for (int l = 0; l < result.PrototypeAccuracy.Count; l++)
        {
            Accumulate($"prototype_top1_{l}", result.PrototypeAccuracy[l]);
        }

        for (int v = 0; v < result.LocalInfoNce.Count; v++)
        {
            Accumulate($"loss_local_{v}", result.LocalInfoNce[v]);
        }

        _steps++;
    }

    /// <summary>The means so far (one host copy of all sums).</summary>
    public IReadOnlyDictionary<string, double> Means()
    {
        if (_steps == 0)
        {
            return new Dictionary<string, double>();
        }

        using var scope = NewDisposeScope();
        var names = _sums.Keys.ToArray();
        var values = stack(names.Select(n => _sums[n]).ToArray()).to(ScalarType.Float64).cpu().data<double>().ToArray();
        return names.Select((n, i) => (n, v: values[i] / _steps)).ToDictionary(p => p.n, p => p.v);
    }

    /// <summary>A short line for the progress display: loss, instance top-1 and acceptance ratios.</summary>
    public string Summary()
    {
        var means = Means();
        string Get(string name, string format) => means.TryGetValue(name, out double v) ? v.ToString(format, CultureInfo.InvariantCulture) : "-";
        string acceptance = string.Join("/", means.Where(p => p.Key.StartsWith("acceptance_", StringComparison.Ordinal)).Select(p => p.Value.ToString("F2", CultureInfo.InvariantCulture)));
        return $"loss {Get("loss", "F3")} acc {Get("instance_top1", "P1")}" + (acceptance.Length > 0 ? $" accept {acceptance}" : string.Empty);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var sum in _sums.Values)
        {
            sum.Dispose();
        }
    }

    private void Accumulate(string name, Tensor value)
    {
        using var detached = value.detach().to(ScalarType.Float32);
        if (_sums.TryGetValue(name, out var sum))
        {
            using var one = 1.ToScalar();
            sum.add_(detached, one);
        }
        else
        {
            _sums[name] = detached.clone().DetachFromDisposeScope();
        }
    }
}
