using Hcsc.Models.Backbones;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models.Checkpoints;

/// <summary>Loads PyTorch weights into a <see cref="ResNet"/> backbone (names are torchvision's, so no renaming is needed).</summary>
public static class PyTorchImport
{
    /// <summary>The prefixes under which MoCo / HCSC checkpoints keep the query encoder, tried in this order.</summary>
    public static IReadOnlyList<string> QueryEncoderPrefixes { get; } = ["module.encoder_q.", "encoder_q."];

    /// <summary>
    /// Loads a torchvision ResNet state dict (<c>torch.save(resnet.state_dict(), "x.pth")</c>) into <paramref name="backbone"/>.
    /// </summary>
    /// <param name="backbone">The backbone to fill; its architecture, widths and stem must match the file's.</param>
    /// <param name="path">The <c>.pth</c> file.</param>
    /// <param name="includeClassifier">
    /// <c>true</c>: <c>fc.*</c> is loaded like every other key (the backbone's <c>fc</c> must match).
    /// <c>false</c>: the file's <c>fc.*</c> keys are set aside and the backbone's <c>fc</c> is left as it is.
    /// </param>
    /// <exception cref="StateDictMismatchException">Missing, unexpected or mis-shaped keys; all are listed.</exception>
    public static ImportReport LoadTorchvision(ResNet backbone, string path, bool includeClassifier = true)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        using var scope = NewDisposeScope();
        var stateDict = PyTorchStateDict.Read(path);
        var setAside = includeClassifier ? [] : stateDict.Keys.Where(IsHead).ToList();
        foreach (var key in setAside)
        {
            stateDict.Remove(key);
        }

        var loaded = StateDictLoading.LoadStrict(backbone, stateDict, $"'{path}'", includeClassifier ? null : IsHead);
        return new ImportReport(loaded, setAside);
    }

    /// <summary>
    /// Loads the query encoder's backbone from a MoCo / HCSC pretraining checkpoint (<c>.pth.tar</c> with a
    /// <c>state_dict</c> whose keys start with <c>module.encoder_q.</c>, or <c>encoder_q.</c> when saved without
    /// DataParallel). The projection head (<c>fc.*</c>), the key encoder and the queue are set aside; the backbone's
    /// own <c>fc</c> is left as it is.
    /// </summary>
    /// <param name="backbone">The backbone to fill.</param>
    /// <param name="path">The checkpoint file.</param>
    /// <param name="prefix">The query-encoder prefix, or <c>null</c> to detect it (<see cref="QueryEncoderPrefixes"/>).</param>
    /// <exception cref="InvalidDataException">No key has the prefix.</exception>
    /// <exception cref="StateDictMismatchException">Missing, unexpected or mis-shaped backbone keys; all are listed.</exception>
    public static ImportReport LoadPretraining(ResNet backbone, string path, string? prefix = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        using var scope = NewDisposeScope();
        var stateDict = PyTorchStateDict.Read(path);
        prefix ??= QueryEncoderPrefixes.FirstOrDefault(p => stateDict.Keys.Any(k => k.StartsWith(p, StringComparison.Ordinal)));
        if (prefix is null || !stateDict.Keys.Any(k => k.StartsWith(prefix, StringComparison.Ordinal)))
        {
            var sample = string.Join(", ", stateDict.Keys.Take(8));
            throw new InvalidDataException(
                $"'{path}' has no query-encoder keys (looked for the prefix {(prefix is null ? string.Join(" or ", QueryEncoderPrefixes) : prefix)}; keys start like: {sample}).");
        }

        var backboneKeys = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var setAside = new List<string>();
        foreach (var (key, tensor) in stateDict)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal) && !IsHead(key[prefix.Length..]))
            {
                backboneKeys[key[prefix.Length..]] = tensor;
            }
            else
            {
                setAside.Add(key);
            }
        }

        var loaded = StateDictLoading.LoadStrict(backbone, backboneKeys, $"'{path}' (prefix '{prefix}')", IsHead);
        return new ImportReport(loaded, setAside);
    }

    /// <summary>
    /// Loads both encoders of a MoCo / HCSC pretraining checkpoint into <paramref name="model"/> (to resume or fine-tune
    /// PyTorch-trained weights in .NET): keys <c>module.encoder_q.*</c> and <c>module.encoder_k.*</c> (or without
    /// <c>module.</c>) map to the model's <c>encoder_q.*</c> and <c>encoder_k.*</c>, heads included; everything else
    /// (the queue, its pointer) is set aside. The model's Dim, Mlp and backbone must match the checkpoint's.
    /// </summary>
    /// <exception cref="InvalidDataException">The file has no encoder keys.</exception>
    /// <exception cref="StateDictMismatchException">Missing, unexpected or mis-shaped keys; all are listed.</exception>
    public static ImportReport LoadPretrainingModel(HcscModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        var stateDict = PyTorchStateDict.Read(path);
        var encoders = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var setAside = new List<string>();
        foreach (var (key, tensor) in stateDict)
        {
            var name = key.StartsWith("module.", StringComparison.Ordinal) ? key["module.".Length..] : key;
            if (name.StartsWith("encoder_q.", StringComparison.Ordinal) || name.StartsWith("encoder_k.", StringComparison.Ordinal))
            {
                encoders[name] = tensor;
            }
            else
            {
                setAside.Add(key);
            }
        }

        if (encoders.Count == 0)
        {
            throw new InvalidDataException($"'{path}' has no encoder_q / encoder_k keys (keys start like: {string.Join(", ", stateDict.Keys.Take(8))}).");
        }

        var loaded = StateDictLoading.LoadStrict(model, encoders, $"'{path}'");
        return new ImportReport(loaded, setAside);
    }

    private static bool IsHead(string key) => key.StartsWith("fc.", StringComparison.Ordinal);
}
