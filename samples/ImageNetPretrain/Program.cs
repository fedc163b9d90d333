using Hcsc.Samples.ImageNetPretrain.Commands;

return HcscCli.Create().Parse(args).Invoke();
