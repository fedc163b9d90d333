using System.Text.Json;
using System.Text.Json.Serialization;
using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Commands;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// <c>run.json</c> in the experiment folder: the options and settings a run was started with, so
/// <c>knn</c> (and a person) can rebuild the model of a checkpoint without repeating every flag.
/// </summary>
public sealed record RunManifest(HcscOptions Options, PretrainSettings Settings)
{
    /// <summary>The file name.</summary>
    public const string FileName = "run.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    /// <summary>Writes the manifest to <paramref name="directory"/> (temp file, then rename).</summary>
    public void Write(string directory)
    {
        string path = Path.Combine(directory, FileName);
        File.WriteAllText(path + ".tmp", JsonSerializer.Serialize(this, Json));
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>The manifest in <paramref name="directory"/>, or null when there is none.</summary>
    public static RunManifest? TryRead(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<RunManifest>(File.ReadAllText(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid run manifest: {e.Message}", e);
        }
    }
}
