using System.Globalization;
using Hcsc.Core.Options;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// The settings that fix the shapes of a run's checkpoint: the backbone (architecture, base width, stem), the
/// embedding size, the head, the queue length and the batch-norm splits. A resumed run takes them from the run's
/// <c>run.json</c> unless the command line sets them.
/// </summary>
public static class ModelShape
{
    /// <summary>The configuration keys of the shape in <see cref="HcscOptions"/>.</summary>
    public static readonly string[] OptionKeys = ["Model:Arch", "Model:Dim", "Model:Mlp", "Model:QueueLength", "Model:BatchNormSplits"];

    /// <summary>One line: "arch resnet18, width 16, small stem, dim 64, MLP head, queue 1024, 4 BN splits".</summary>
    public static string Describe(ModelOptions model, PretrainSettings settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        return string.Create(CultureInfo.InvariantCulture,
            $"arch {model.Arch}, width {settings.Width}, {(settings.SmallStem ? "small" : "ImageNet")} stem, dim {model.Dim}, {(model.Mlp ? "MLP" : "linear")} head, queue {model.QueueLength}, {model.BatchNormSplits} BN split(s)");
    }

    /// <summary>
    /// The shape of <paramref name="recorded"/> (the run's run.json) in place of what <paramref name="options"/> and
    /// <paramref name="settings"/> hold, except for what the command line set: the keys in <paramref name="explicitKeys"/>,
    /// and the width and stem when <paramref name="widthGiven"/> / <paramref name="stemGiven"/>.
    /// </summary>
    /// <returns>The settings to resume with, and the names of what was taken from run.json.</returns>
    public static (PretrainSettings Settings, List<string> Taken) ApplyRecorded(
        RunManifest recorded, HcscOptions options, PretrainSettings settings, IReadOnlyCollection<string> explicitKeys, bool widthGiven, bool stemGiven)
    {
        ArgumentNullException.ThrowIfNull(recorded);
        ArgumentNullException.ThrowIfNull(options);
        var taken = new List<string>();
        var model = options.Model;
        var was = recorded.Options.Model;
        void Take<T>(string key, T current, T previous, Action<T> set)
        {
            if (!explicitKeys.Contains(key) && !EqualityComparer<T>.Default.Equals(current, previous))
            {
                set(previous);
                taken.Add($"{key} = {previous}");
            }
        }

        Take("Model:Arch", model.Arch, was.Arch, v => model.Arch = v);
        Take("Model:Dim", model.Dim, was.Dim, v => model.Dim = v);
        Take("Model:Mlp", model.Mlp, was.Mlp, v => model.Mlp = v);
        Take("Model:QueueLength", model.QueueLength, was.QueueLength, v => model.QueueLength = v);
        Take("Model:BatchNormSplits", model.BatchNormSplits, was.BatchNormSplits, v => model.BatchNormSplits = v);
        var result = settings;
        if (!widthGiven && settings.Width != recorded.Settings.Width)
        {
            result = result with { Width = recorded.Settings.Width };
            taken.Add($"--width {recorded.Settings.Width}");
        }

        if (!stemGiven && settings.SmallStem != recorded.Settings.SmallStem)
        {
            result = result with { SmallStem = recorded.Settings.SmallStem };
            taken.Add($"--small-stem {recorded.Settings.SmallStem}");
        }

        return (result, taken);
    }
}
