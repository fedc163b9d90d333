using System.Text.Json;
using ScottPlot;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// PNG plots of a run's <c>metrics.jsonl</c> (ScottPlot): loss per epoch (total and its parts), kNN top-1 per evaluated
/// epoch, NMI of every clustering level per epoch, and ICSC acceptance ratios per level per epoch.
/// </summary>
public static class RunPlots
{
    /// <summary>The files <see cref="Write"/> makes, in the order made.</summary>
    public static readonly IReadOnlyList<string> FileNames = ["loss.png", "knn_top1.png", "nmi.png", "acceptance.png"];

    /// <summary>
    /// Reads <paramref name="metricsPath"/> and writes the plots into <paramref name="directory"/>; a plot with no data
    /// (e.g. acceptance ratios of a run that never clustered) is skipped.
    /// </summary>
    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> Write(string metricsPath, string directory)
    {
        var records = File.ReadAllLines(metricsPath).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        var epochs = records.Where(r => !r.TryGetProperty("evaluation", out _)).ToList();
        Directory.CreateDirectory(directory);
        var written = new List<string>();

        void Save(Plot plot, string name, string title, string yLabel)
        {
            plot.Title(title);
            plot.XLabel("epoch");
            plot.YLabel(yLabel);
            plot.ShowLegend(Alignment.UpperRight);
            string path = Path.Combine(directory, name);
            plot.SavePng(path, 900, 540);
            written.Add(path);
        }

        var loss = new Plot();
        int lossSeries = AddSeries(loss, epochs, "loss", "total")
            + AddSeries(loss, epochs, "loss_infonce", "InfoNCE")
            + AddLevels(loss, epochs, "loss_icsc_", "ICSC level ")
            + AddLevels(loss, epochs, "loss_pcsc_", "PCSC level ");
        if (lossSeries > 0)
        {
            Save(loss, FileNames[0], "Training loss (epoch mean)", "loss");
        }

        // kNN top-1: the untrained evaluation at epoch 0, periodic evaluations at their epoch, the final one at the end.
        var knnPoints = records.Where(r => r.TryGetProperty("knn_top1", out _))
            .Select(r => (Epoch: r.TryGetProperty("evaluation", out var e) && e.GetString() == "untrained" ? 0.0 : r.GetProperty("epoch").GetDouble() + (r.TryGetProperty("evaluation", out _) ? 0 : 1),
                          Value: r.GetProperty("knn_top1").GetDouble()))
            .OrderBy(p => p.Epoch).ToList();
        if (knnPoints.Count > 0)
        {
            var knn = new Plot();
            var scatter = knn.Add.Scatter(knnPoints.Select(p => p.Epoch).ToArray(), knnPoints.Select(p => p.Value).ToArray());
            scatter.LegendText = "kNN top-1 (k = 20)";
            Save(knn, FileNames[1], "kNN top-1 on the validation set", "top-1 (%)");
        }

        var nmi = new Plot();
        if (AddLevels(nmi, epochs, "nmi", "level ", list: true) > 0)
        {
            Save(nmi, FileNames[2], "NMI of each clustering level vs labels", "NMI");
        }

        var acceptance = new Plot();
        if (AddLevels(acceptance, epochs, "acceptance_", "ICSC level ") > 0)
        {
            Save(acceptance, FileNames[3], "Share of queue negatives kept by instance selection", "acceptance ratio");
        }

        return written;
    }

    private static int AddSeries(Plot plot, List<JsonElement> epochs, string field, string label)
    {
        var points = epochs.Where(r => r.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Number)
            .Select(r => (Epoch: r.GetProperty("epoch").GetDouble() + 1, Value: r.GetProperty(field).GetDouble())).ToList();
        if (points.Count == 0)
        {
            return 0;
        }

        var scatter = plot.Add.Scatter(points.Select(p => p.Epoch).ToArray(), points.Select(p => p.Value).ToArray());
        scatter.LegendText = label;
        return 1;
    }

    // Fields name_0, name_1, … (or, with list, one array field whose element l is level l).
    private static int AddLevels(Plot plot, List<JsonElement> epochs, string field, string label, bool list = false)
    {
        int added = 0;
        for (int level = 0; level < 16; level++)
        {
            if (list)
            {
                int l = level;
                var points = epochs.Where(r => r.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > l)
                    .Select(r => (Epoch: r.GetProperty("epoch").GetDouble() + 1, Value: r.GetProperty(field)[l].GetDouble())).ToList();
                if (points.Count == 0)
                {
                    break;
                }

                plot.Add.Scatter(points.Select(p => p.Epoch).ToArray(), points.Select(p => p.Value).ToArray()).LegendText = label + level;
                added++;
            }
            else
            {
                int n = AddSeries(plot, epochs, field + level, label + level);
                if (n == 0)
                {
                    break;
                }

                added += n;
            }
        }

        return added;
    }
}
