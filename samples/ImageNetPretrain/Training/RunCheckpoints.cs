using System.Globalization;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Models.Checkpoints;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// The checkpoints of a run's experiment folder: written atomically at the end of every epoch (checkpoint_latest.hcsc
/// and a numbered copy) or inside one (with the position), read back on resume, and found for <c>--resume auto</c> (the
/// newest intact one, after removing the temporary files of an interrupted write). Rank 0 alone writes; the ranks'
/// own random state for the selection masks goes into the checkpoint too, so each rank resumes its own draws.
/// </summary>
internal sealed class RunCheckpoints(HcscOptions options, PretrainSettings settings, TextWriter output, GracefulStop stop, ICollectives group)
{
    // Rank 0's mask state is stored under this name (as in one process), rank r's under MaskStateName + "_rank" + r.
    private const string MaskStateName = "mask_generator_state";

    private readonly HcscOptions _options = options;
    private readonly PretrainSettings _settings = settings;
    private readonly TextWriter _output = output;
    private readonly GracefulStop _stop = stop;
    private readonly ICollectives _group = group;

    // At the end of an epoch (position null): checkpoint_latest.hcsc and a numbered copy. Inside an epoch: only
    // checkpoint_latest.hcsc, with the position in the epoch.
    public void Save(int completedEpochs, HcscModel model, TorchSharp.Modules.OptimizerHelper optimizer, SelectiveKeyQueue queue, RunGenerators generators, EpochPosition? position = null)
    {
        using var scope = NewDisposeScope();
        var maskStates = GatherMaskStates(generators.Masks);
        if (_group.Rank != 0)
        {
            return; // rank 0 writes the checkpoint; the ranks hold the same state but for their mask draws, gathered above
        }

        string path = Path.Combine(_settings.ExperimentDirectory, PretrainRun.LatestCheckpoint);
        var extras = new Dictionary<string, Tensor> { ["shuffle_generator_state"] = generators.Shuffle.get_state() };
        for (int rank = 0; rank < maskStates.Count; rank++)
        {
            extras[MaskStateName + RankSuffix(rank)] = maskStates[rank];
        }
        var metadata = new Dictionary<string, string> { ["arch"] = _options.Model.Arch, ["dataset"] = _settings.Dataset };
        if (position is not null)
        {
            foreach (var (name, tensor) in position.ToTensors())
            {
                extras[name] = tensor;
            }

            metadata[EpochPosition.StepKey] = position.Step.ToString(CultureInfo.InvariantCulture);
        }

        string pausePoint = position is null ? $"epoch{completedEpochs}-checkpoint-write" : $"epoch{Numbering.Displayed(position.Epoch)}-step{position.Step}-checkpoint-write";
        bool hadCheckpoint = File.Exists(path);
        try
        {
            TrainingCheckpoint.Save(path, completedEpochs, model, optimizer, queue, extras, metadata, () =>
            {
                FaultInjection.PauseAt(pausePoint, _output, _stop);
                FaultInjection.FailAt(pausePoint);
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException(
                $"The checkpoint {path} could not be written ({e.Message}). " +
                (hadCheckpoint ? "The previous checkpoint there is unchanged. " : "No checkpoint of this run exists yet. ") +
                $"Free space or fix the folder, then continue with --exp-dir {_settings.ExperimentDirectory} --resume auto.", e);
        }

        if (position is not null)
        {
            _output.WriteLine($"checkpoint: {path} (epoch {Numbering.Displayed(position.Epoch)}, step {position.Step})");
            return;
        }

        // The numbered copy is made under a temporary name and renamed, so it too is complete or absent.
        string numbered = Path.Combine(_settings.ExperimentDirectory, $"checkpoint_{completedEpochs:D4}.hcsc");
        File.Copy(path, numbered + ".tmp", overwrite: true);
        File.Move(numbered + ".tmp", numbered, overwrite: true);
        if (_settings.KeepCheckpoints > 0)
        {
            foreach (string old in NumberedCheckpoints().Skip(_settings.KeepCheckpoints))
            {
                File.Delete(old);
            }
        }

        _output.WriteLine($"checkpoint: {path} (epoch {completedEpochs})");
    }

    // Every rank's mask generator state ([L] bytes, the same L on every rank of one device kind), in rank order.
    private List<Tensor> GatherMaskStates(Generator masks)
    {
        var local = masks.get_state();
        if (_group.Size == 1)
        {
            return [local];
        }

        var bytes = local.data<byte>().ToArray();
        var gathered = new byte[bytes.Length * _group.Size];
        _group.AllGather<byte>(bytes, gathered);
        return Enumerable.Range(0, _group.Size).Select(rank => tensor(gathered.AsSpan(rank * bytes.Length, bytes.Length).ToArray(), dtype: ScalarType.Byte)).ToList();
    }

    private static string RankSuffix(int rank) => rank == 0 ? string.Empty : $"_rank{rank.ToString(CultureInfo.InvariantCulture)}";

    // checkpoint_NNNN.hcsc, newest first.
    private IEnumerable<string> NumberedCheckpoints() =>
        Directory.GetFiles(_settings.ExperimentDirectory, "checkpoint_????.hcsc").Where(f => int.TryParse(Path.GetFileName(f)[11..15], out _)).OrderByDescending(f => f, StringComparer.Ordinal);

    public (int StartEpoch, EpochPosition? Position) Resume(string path, HcscModel model, TorchSharp.Modules.OptimizerHelper optimizer, SelectiveKeyQueue queue, RunGenerators generators, Device device)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The checkpoint to resume from, '{path}', does not exist.");
        }

        CheckpointContents contents;
        try
        {
            contents = TrainingCheckpoint.Load(path, model, optimizer, queue);
        }
        catch (StateDictMismatchException e)
        {
            throw new InvalidDataException(MismatchMessage(path, e), e);
        }

        EpochPosition? position;
        try
        {
            RestoreMaskState(contents, generators.Masks);
            Restore(contents, "shuffle_generator_state", generators.Shuffle);
            position = EpochPosition.FromCheckpoint(contents.Epoch, contents.Metadata, contents.ExtraTensors, device);
        }
        finally
        {
            foreach (var tensor in contents.ExtraTensors.Values)
            {
                tensor.Dispose();
            }
        }

        _output.WriteLine(position is null
            ? contents.Epoch >= _options.Training.Epochs
                ? $"Resumed from {path}: all {contents.Epoch} epochs done; evaluating the trained model."
                : $"Resumed from {path}: {contents.Epoch} epochs done; continuing at epoch {Numbering.Displayed((int)contents.Epoch)}."
            : $"Resumed from {path}: {contents.Epoch} epochs and {position.Step} steps of epoch {Numbering.Displayed((int)contents.Epoch)} done; continuing there.");
        return (checked((int)contents.Epoch), position);
    }

    // A few lines: the checkpoint's model (from run.json when the folder has one) beside the one asked for, the size of
    // the mismatch with a few examples, and what to do. The full key lists are in the exception's inner exception.
    private string MismatchMessage(string path, StateDictMismatchException e)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        RunManifest? recorded = null;
        try
        {
            recorded = RunManifest.TryRead(directory);
        }
        catch (InvalidDataException)
        {
            // described as unknown below
        }

        string Examples(IReadOnlyList<string> keys) => keys.Count == 0 ? "" : $" (e.g. {string.Join(", ", keys.Take(3))})";
        return string.Join(Environment.NewLine,
            $"The checkpoint '{path}' was written by a model of another shape and cannot be resumed with this one.",
            $"  the checkpoint's run ({RunManifest.FileName}): {(recorded is null ? "unknown (no run.json beside it)" : ModelShape.Describe(recorded.Options.Model, recorded.Settings))}",
            $"  this attempt:                     {ModelShape.Describe(_options.Model, _settings)}",
            $"  state dict: {e.Missing.Count} keys missing{Examples(e.Missing)}, {e.Unexpected.Count} unexpected{Examples(e.Unexpected)}, {e.Misshaped.Count} of another shape{Examples(e.Misshaped)}.",
            $"Drop the options that change the model (--arch, --width, --small-stem, --dim, --mlp, --queue-length, BatchNormSplits) to continue the run, or start a new run with another --exp-dir. {RunManifest.FileName} was left as it was.");
    }

    // Rank r takes its own saved state. A checkpoint of one process, of an older version or of fewer ranks has none for
    // r > 0: that rank keeps its fresh generator (seed + 1 + r) rather than repeat another rank's draws.
    private void RestoreMaskState(CheckpointContents contents, Generator masks)
    {
        string name = MaskStateName + RankSuffix(_group.Rank);
        if (_group.Rank > 0 && !contents.ExtraTensors.ContainsKey(name))
        {
            Console.Error.WriteLine($"warning: rank {_group.Rank}: the checkpoint holds no random state for this rank's selection masks (written by fewer ranks or an older version); this rank draws afresh.");
            return;
        }

        Restore(contents, name, masks);
    }

    private void Restore(CheckpointContents contents, string name, Generator generator)
    {
        if (!contents.ExtraTensors.TryGetValue(name, out var state))
        {
            return;
        }

        try
        {
            generator.set_state(state);
        }
        catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException or ArgumentException)
        {
            _output.WriteLine($"warning: the random state '{name}' was saved on another kind of device and is not restored; the run continues with fresh draws.");
        }
    }

    // The newest checkpoint that verifies: checkpoint_latest.hcsc, else the numbered ones from the newest; null when
    // the folder has none. A damaged file is reported and skipped, not deleted.
    public string? FindForAutoResume()
    {
        if (!Directory.Exists(_settings.ExperimentDirectory))
        {
            return null;
        }

        if (_group.Rank == 0)
        {
            RemoveUnfinishedWrites();
        }

        var candidates = NumberedCheckpoints().Prepend(Path.Combine(_settings.ExperimentDirectory, PretrainRun.LatestCheckpoint)).Where(File.Exists).ToList();
        foreach (string candidate in candidates)
        {
            try
            {
                TrainingCheckpoint.Verify(candidate);
                if (candidate != candidates[0])
                {
                    _output.WriteLine($"resume: falling back to {candidate}, the newest checkpoint that is intact.");
                }

                return candidate;
            }
            catch (InvalidDataException e)
            {
                _output.WriteLine($"warning: {e.Message} Trying an older checkpoint.");
            }
        }

        return candidates.Count == 0 ? null : throw new InvalidDataException(
            $"No intact checkpoint in {_settings.ExperimentDirectory} ({candidates.Count} damaged); start a new run in another --exp-dir, or remove them to start over.");
    }

    // A run killed while writing a checkpoint leaves its temporary file (.checkpoint_latest.hcsc.<id>.tmp, or
    // checkpoint_NNNN.hcsc.tmp for the numbered copy); the checkpoints themselves are complete or absent.
    private void RemoveUnfinishedWrites()
    {
        var unfinished = Directory.GetFiles(_settings.ExperimentDirectory, $".{PretrainRun.LatestCheckpoint}.*.tmp")
            .Concat(Directory.GetFiles(_settings.ExperimentDirectory, "checkpoint_????.hcsc.tmp"));
        foreach (string file in unfinished)
        {
            File.Delete(file);
            _output.WriteLine($"resume: removed {Path.GetFileName(file)}, a checkpoint write that was interrupted.");
        }
    }
}
