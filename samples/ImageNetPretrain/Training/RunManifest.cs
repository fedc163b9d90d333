using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Hcsc.Core.Options;

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
            var root = JsonNode.Parse(File.ReadAllText(path));
            if (root is JsonObject { } manifest && manifest[nameof(Options)] is JsonObject options)
            {
                MigrateOptions(options);
            }

            return root.Deserialize<RunManifest>(Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid run manifest: {e.Message}", e);
        }
    }

    /// <summary>
    /// Moves what earlier versions wrote elsewhere to where <see cref="HcscOptions"/> has it now: τ from
    /// <c>Model.Temperature</c> and the switches of <c>Selection</c> to <c>Objective</c>, so the run.json of an older
    /// run still gives its own settings (unknown properties would otherwise be dropped silently, leaving the defaults).
    /// </summary>
    /// <param name="options">The <c>Options</c> object of a run.json, changed in place.</param>
    internal static void MigrateOptions(JsonObject options)
    {
        var moved = new List<(string Name, JsonNode? Value)>();
        if (options[nameof(HcscOptions.Model)] is JsonObject model && model.TryGetPropertyValue(nameof(ObjectiveOptions.Temperature), out var temperature))
        {
            model.Remove(nameof(ObjectiveOptions.Temperature));
            moved.Add((nameof(ObjectiveOptions.Temperature), temperature));
        }

        if (options["Selection"] is JsonObject selection)
        {
            options.Remove("Selection");
            foreach (var (name, value) in selection.ToList())
            {
                selection.Remove(name);
                moved.Add((name, value));
            }
        }

        if (moved.Count == 0)
        {
            return;
        }

        if (options[nameof(HcscOptions.Objective)] is not JsonObject objective)
        {
            objective = [];
            options[nameof(HcscOptions.Objective)] = objective;
        }

        foreach (var (name, value) in moved)
        {
            if (!objective.ContainsKey(name))
            {
                objective[name] = value;
            }
        }
    }
}
