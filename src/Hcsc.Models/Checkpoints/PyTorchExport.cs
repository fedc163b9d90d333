using Hcsc.Models.Backbones;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Models.Checkpoints;

/// <summary>Writes a <see cref="ResNet"/> backbone as a PyTorch state dict for torchvision, detectron2 and friends.</summary>
public static class PyTorchExport
{
    /// <summary>
    /// Writes the backbone's parameters and buffers under torchvision's names to a <c>torch.save</c> file.
    /// A standard-stem, base-width-64 ResNet-50 exported with <paramref name="classifierClasses"/> = 1000 loads with
    /// <c>torchvision.models.resnet50().load_state_dict(torch.load(path))</c> (strict).
    /// </summary>
    /// <param name="backbone">The backbone (its head, if any, is handled as below).</param>
    /// <param name="path">The file to write (atomically).</param>
    /// <param name="classifierClasses">
    /// <c>null</c>: no <c>fc.*</c> keys (load with <c>strict=False</c>, or into a model without <c>fc</c>).
    /// N: <c>fc.weight</c> [N, F] and <c>fc.bias</c> [N]: the backbone's own <c>fc</c> when it is a linear layer with N outputs,
    /// otherwise (e.g. a projection head) a fresh classifier initialised as MoCo's linear probe does (weight ~ N(0, 0.01), bias 0).
    /// </param>
    /// <param name="generator">Random source of a fresh classifier, or <c>null</c> for the global one.</param>
    /// <returns>The keys written.</returns>
    public static IReadOnlyList<string> ExportBackbone(ResNet backbone, string path, int? classifierClasses = 1000, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        if (classifierClasses is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(classifierClasses), classifierClasses, "The classifier needs at least one class (or null for none).");
        }

        using var scope = NewDisposeScope();
        var stateDict = backbone.state_dict()
            .Where(kv => !kv.Key.StartsWith("fc.", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        if (classifierClasses is int classes)
        {
            if (backbone.Head is Linear linear && linear.weight!.shape[0] == classes)
            {
                stateDict["fc.weight"] = linear.weight;
                stateDict["fc.bias"] = linear.bias ?? zeros(classes);
            }
            else
            {
                stateDict["fc.weight"] = normal(0, 0.01, new long[] { classes, backbone.FeatureDim }, generator: generator);
                stateDict["fc.bias"] = zeros(classes);
            }
        }

        PyTorchStateDict.Write(path, stateDict);
        return stateDict.Keys.ToList();
    }
}
