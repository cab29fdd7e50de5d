"""Exercises at the end of each notebook, with checks that explain what is wrong.

>>> def blocks_per_stage(depth):               # the learner's answer
...     return (depth - 2) // 6
>>> wb.exercises.check("blocks_per_stage", blocks_per_stage)   # doctest: +SKIP
✓ blocks_per_stage: correct

A check runs the answer on several cases and compares it with a reference solution kept in
``workbench/exercises/_solutions.py`` (not shown in the notebooks); on the first mismatch it
says which case failed and, where the mistake is a common one, what it probably is.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable

from . import _checks


@dataclass
class Exercise:
    name: str
    notebook: str
    prompt: str
    checker: Callable[[Callable], str | None]  # returns None when correct, else the explanation


EXERCISES: dict[str, Exercise] = {e.name: e for e in [
    Exercise("blocks_per_stage", "00_tour.ipynb",
             "A CIFAR ResNet of depth 6n + 2 has three stages of n blocks. Write blocks_per_stage(depth) -> n, "
             "raising ValueError for a depth that is not 6n + 2 with n >= 1.", _checks.blocks_per_stage),
    Exercise("bn_only_parameters", "01_training_batchnorm_only.ipynb",
             "Write bn_only_parameters(model) -> set of the parameter names that BN-only training trains "
             "(the paper's headline setting: the output layer stays frozen).", _checks.bn_only_parameters),
    Exercise("linear_cka", "02_training_the_untrainable.ipynb",
             "Write linear_cka(X, Y) -> float for two float64 tensors of shape (n, d1) and (n, d2): "
             "||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centered Xc, Yc.", _checks.linear_cka),
    Exercise("guide_layer_mapping", "02_training_the_untrainable.ipynb",
             "Write guide_layer_mapping(T, G) -> list of G target-layer indices: guide layer i goes to "
             "round(i (T - 1) / (G - 1)).", _checks.guide_layer_mapping),
    Exercise("real_accuracy", "03_relabel_imagenet.ipynb",
             "Write real_accuracy(predictions, label_sets) -> float: the share of images whose top-1 "
             "prediction is in its label set, over the images whose set is not empty.", _checks.real_accuracy),
    Exercise("composition_accuracy", "04_reassessing_imagenet.ipynb",
             "Write composition_accuracy(acc_by_size, share_by_size) -> float: the accuracy expected on a test "
             "set whose label-set sizes occur with the shares given, if accuracy per size stayed as given. "
             "Both are dicts from set size to a number; a size missing from acc_by_size takes the accuracy "
             "of the largest size present.", _checks.composition_accuracy),
    Exercise("filter_normalize", "05_vit_vs_resnet_sharpness.ipynb",
             "Write filter_normalize(d, w) -> tensor: for a weight w with two or more dimensions, scale each filter "
             "d[i] of the direction to the norm of w[i]; for a one-dimensional w return zeros.", _checks.filter_normalize),
    Exercise("hutchinson_trace", "05_vit_vs_resnet_sharpness.ipynb",
             "Write hutchinson_trace(matvec, probes) -> float: the mean of z · (H z) over the given Rademacher "
             "probes z, where matvec(z) returns H z.", _checks.hutchinson_trace),
    Exercise("symmetric_quantize", "06_zeroq.ipynb",
             "Write symmetric_quantize(x, bits) -> tensor: x fake-quantized to a symmetric signed grid of "
             "bits bits with one scale, scale = max|x| / qmax where qmax = 2^(bits-1) - 1: "
             "scale * clamp(round(x / scale), -qmax, qmax).", _checks.symmetric_quantize),
    Exercise("ternary_quantize", "07_bitnet_b158_small.ipynb",
             "Write ternary_quantize(w, rule) -> tensor: BitNet b1.58's weights, gamma * clamp(round(w / (gamma + 1e-5)), -1, 1), "
             "where gamma is the mean of |w| (rule 'absmean') or its median (rule 'median').", _checks.ternary_quantize),
    Exercise("pareto_mask", "08_pareto_4bit.ipynb",
             "Write pareto_mask(cost, acc) -> list of booleans: True where no other model has a cost as low or lower "
             "and an accuracy as high or higher, with one of the two strictly better.", _checks.pareto_mask),
    Exercise("best_allocation", "09_adaquant_ilp.ipynb",
             "Write best_allocation(loss, size, budget) -> list of option indices, one per layer: the choice with the "
             "smallest summed loss[i][j] whose summed size[i][j] is at most budget (every combination tried).",
             _checks.best_allocation),
    Exercise("e2m1_round", "10_fliqs.ipynb",
             "Write e2m1_round(x) -> tensor: each value of x rounded to the nearest FP4 E2M1 value (±0, 0.5, 1, 1.5, 2, "
             "3, 4, 6), a tie to the value whose code ends in a 0 bit (0, 1, 2, 4), beyond ±6 saturated to ±6.",
             _checks.e2m1_round),
    Exercise("hypervolume", "11_simq_nas.ipynb",
             "Write hypervolume(points, ref_size) -> float: the area of the union of the rectangles "
             "[size, ref_size] x [0, accuracy] over the (size, accuracy) points; points of size >= ref_size add nothing.",
             _checks.hypervolume),
    Exercise("erk_densities", "12_random_pruning.ipynb",
             "Write erk_densities(shapes, sparsity) -> {layer: density}: eps * sum(shape) / prod(shape) with one eps "
             "so that the network keeps 1 - sparsity of its weights; a layer whose density would exceed 1 is kept "
             "dense and eps recomputed for the others.", _checks.erk_densities),
    Exercise("best_levels", "13_layer_adaptive_pruning.ipynb",
             "Write best_levels(curves, need) -> list of option indices: curves maps each layer to a list of "
             "(pruned, distortion) options; pick one per layer so that at least need weights are pruned and the "
             "summed distortion is smallest.", _checks.best_levels),
    Exercise("ap_drop", "14_ap_selective_activation.ipynb",
             "Write ap_drop(weights, reference, k) -> 0/1 tensor of the shape of weights: 0 at the k negative "
             "weights that moved least (smallest |weights - reference|, ties by flattened position, first first), "
             "1 elsewhere.", _checks.ap_drop),
    Exercise("mass_targets", "15_dynamic_pruning.ipynb",
             "Write mass_targets(heat, r) -> float tensor of 0s and 1s of heat's shape [batch, channels]: in each row, "
             "rank the channels by their share of the row's total heat (equal shares: lower index first) and mark the "
             "fewest top channels whose shares add up to at least r (tolerance 1e-9); channels of zero heat are 0.",
             _checks.mass_targets),
    Exercise("reinforce_loss", "16_n2n.ipynb",
             "Write reinforce_loss(log_probs, rewards, baseline) -> scalar tensor: minus the mean over the m rollouts "
             "of (reward - baseline) * log_prob, so that a gradient descent step on it is REINFORCE's ascent step; "
             "log_probs is a [m] tensor with a gradient, rewards a list of m numbers, baseline a number.",
             _checks.reinforce_loss),
    Exercise("inverted_residual_macs", "20_mobilenetv2.ipynb",
             "Write inverted_residual_macs(cin, cout, h, w, t, stride) -> int: the multiply-adds of one MobileNetV2 block "
             "on an h x w input: a 1x1 expansion to t * cin channels (none when t == 1), a 3x3 depthwise convolution "
             "with stride (padding 1: output ceil(h / stride) x ceil(w / stride)), a 1x1 projection to cout channels; "
             "one multiply-add per weight per output position, BatchNorm and biases ignored.",
             _checks.inverted_residual_macs),
    Exercise("plain_params", "19_simplenet.ipynb",
             "Write plain_params(layout, in_chans, num_classes) -> int: the parameters of a plain network whose layout "
             "items are an int c (3x3 convolution to c channels with bias, then BatchNorm with scale and shift), a tuple "
             "(c, 1) (the same with a 1x1 convolution) or 'P' (max-pooling, no parameters), followed by global pooling "
             "and a linear layer with bias to num_classes.",
             _checks.plain_params),
    Exercise("scaled_residual", "17_inception_resnet.ipynb",
             "Write scaled_residual(x, branch_out, scale) -> tensor: an Inception-ResNet block's output from its input x "
             "and its linear branch's output (same shape): relu(x + scale * branch_out).",
             _checks.scaled_residual),
    Exercise("hyperzzw_conv", "21_hyperzzw.ipynb",
             "Write hyperzzw_conv(z, kernel, context) -> [batch, C, H, W]: channel c of image b convolved (as F.conv2d, "
             "cross-correlation, zero padding k // 2, stride 1) with kernel[c] * context[b, c]; z is [batch, C, H, W], "
             "kernel [C, k, k], context [batch, C, k, k].", _checks.hyperzzw_conv),
    Exercise("mobius_add", "18_poincare_resnet.ipynb",
             "Write mobius_add(x, y, c) -> tensor: Möbius addition on the Poincaré ball of curvature -c, "
             "((1 + 2c<x,y> + c||y||^2) x + (1 - c||x||^2) y) / (1 + 2c<x,y> + c^2 ||x||^2 ||y||^2), coordinates "
             "along the last dimension of x and y (any leading batch dimensions).", _checks.mobius_add),
    Exercise("interpolate_pos_embed", "22_resformer.ipynb",
             "Write interpolate_pos_embed(pos, height, width) -> tensor: a ViT's learned positional embedding pos "
             "[g * g, dim] (a g x g token grid, row by row) resized to a height x width grid, [height * width, dim] "
             "row by row: each channel interpolated as an image, bicubic, align_corners=False.",
             _checks.interpolate_pos_embed),
    Exercise("equal_score_retention", "24_retnet_conv.ipynb",
             "Write equal_score_retention(v, gamma) -> [C, H, W]: Manhattan self-attention in the paper's form, "
             "(softmax(S) * D) V, when every score is equal, over the H * W positions of v (row-major tokens, "
             "D[n, m] = gamma^(|y_n - y_m| + |x_n - x_m|)); as attention or as a depthwise convolution.",
             _checks.equal_score_retention),
    Exercise("manhattan_decay_matrix", "25_rmt.ipynb",
             "Write manhattan_decay_matrix(h, w, gamma) -> [h*w, h*w] float tensor: D[n, m] = "
             "gamma^(|y_n - y_m| + |x_n - x_m|) for the tokens of an h x w grid numbered row by row (n = y * w + x).",
             _checks.manhattan_decay_matrix),
    Exercise("kendall_tau", "26_nasnet.ipynb",
             "Write kendall_tau(a, b) -> float: Kendall's tau of two lists of scores of the same n candidates without "
             "ties: (concordant pairs - discordant pairs) / (n (n - 1) / 2), over all pairs i < j.", _checks.kendall_tau),
    Exercise("vit_block_macs", "27_vit_resnas.ipynb",
             "Write vit_block_macs(tokens, width, mlp_ratio) -> int: the multiply-adds of one pre-norm transformer block: "
             "qkv (width -> 3 width), the scores q k^T and the weighted sum of the values (tokens x tokens x width each), "
             "the output projection (width -> width) and the MLP (width -> int(width * mlp_ratio) -> width); one "
             "multiply-add per weight per token for the linear maps; biases, norms, softmax and activations ignored.",
             _checks.vit_block_macs),
    Exercise("halo_window", "23_halonet.ipynb",
             "Write halo_window(y, x, h, w, block, halo) -> (y0, y1, x0, x1): the image rows y0 <= row < y1 and columns "
             "x0 <= col < x1 that the query at (y, x) attends to in HaloNet's blocked local attention: its block x block "
             "query block grown by halo pixels on every side, cropped to the h x w image.", _checks.halo_window),
    Exercise("nt_xent_loss", "28_simclrv2.ipynb",
             "Write nt_xent_loss(z1, z2, temperature) -> float: SimCLR's NT-Xent of two views [N, D] of N images (row i "
             "of z1 and of z2 are views of image i). L2-normalize the 2N embeddings; for each of the 2N anchors, the "
             "cross-entropy of picking its partner view among the 2N - 1 other embeddings, with similarities "
             "z_i . z_k / temperature; return the mean over the 2N anchors.", _checks.nt_xent_loss),
    Exercise("selfie_loss", "29_selfie.ipynb",
             "Write selfie_loss(queries, patches) -> float: Selfie's loss for queries and patches of shape [B, M, D] "
             "(M masked patches per image): the mean over the B x M queries of the cross-entropy of the scores "
             "v_i . h_j, where query i of an image chooses among that image's M patches j and the right one is j = i.",
             _checks.selfie_loss),
    Exercise("sparse_batch_norm", "30_spark.ipynb",
             "Write sparse_batch_norm(x, visible) -> [B, C, H, W]: BatchNorm in training mode without affine "
             "parameters, per-channel mean and biased variance over the visible positions only (visible: bool "
             "[B, 1, H, W]), (x - mean) / sqrt(var + 1e-5) there and exactly 0 at hidden positions.",
             _checks.sparse_batch_norm),
    Exercise("adaptive_search", "31_matryoshka.ipynb",
             "Write adaptive_search(z_db, z_query, shortlist_dims, rerank_dims, shortlist) -> [Q] database indices: for "
             "each query the shortlist items most cosine-similar on the first shortlist_dims coordinates, then among "
             "those only the one most similar on the first rerank_dims coordinates (each prefix normalized on its own).",
             _checks.adaptive_search),
    Exercise("grassmann_logits", "32_grassmann.ipynb",
             "Write grassmann_logits(x, bases, scale) -> [B, C]: scale * ||S_c^T x_b|| / ||x_b|| for features x [B, D] "
             "and orthonormal class bases [C, D, k] (the length of each feature's projection on each class's subspace).",
             _checks.grassmann_logits),
    Exercise("roc_auc", "33_imaginet.ipynb",
             "Write roc_auc(scores, labels) -> float for 1-D tensors (labels 1 synthetic, 0 real): the probability that a "
             "random synthetic image scores higher than a random real one, a tie counting one half.", _checks.roc_auc),
    Exercise("ensemble_soft_target", "34_meal_v2.ipynb",
             "Write ensemble_soft_target(teacher_logits, temperature) -> tensor: teacher_logits [batch, classes, K] "
             "holds the logits of K teachers; return [batch, classes], each teacher's softmax over the classes of its "
             "logits divided by temperature, averaged over the teachers.", _checks.ensemble_soft_target),
    Exercise("sparse_topk_target", "35_dataset_reinforcement.ipynb",
             "Write sparse_topk_target(probs, k) -> [batch, classes]: keep each row's k largest probabilities, set the "
             "others to zero and renormalise the kept ones to sum to 1.", _checks.sparse_topk_target),
    Exercise("least_squares_stitch", "36_stitchable.ipynb",
             "Write least_squares_stitch(x, y) -> (weight [C_out, C_in], bias [C_out]): the 1x1 convolution with a bias "
             "that best maps feature maps x [N, C_in, H, W] onto y [N, C_out, H, W] in the least-squares sense, one "
             "regression row per image and pixel.", _checks.least_squares_stitch),
    Exercise("backward_transfer", "37_hypernet_continual.ipynb",
             "Write backward_transfer(R) -> float: R is a T x T list of lists, R[i][j] the accuracy on task j after "
             "training tasks 0 .. i (None above the diagonal); return the mean over the tasks j < T - 1 of "
             "R[T-1][j] - R[j][j] (negative: forgetting).", _checks.backward_transfer),
    Exercise("match_units", "38_pleas.ipynb",
             "Write match_units(a, b) -> perm: a and b are activations [n, d] of one layer of two networks on the same "
             "inputs; return the permutation (a list of d ints, perm[i] the unit of b matched to unit i of a) that "
             "maximizes the summed Pearson correlation of a[:, i] and b[:, perm[i]].", _checks.match_units),
    Exercise("confident_entropy", "39_ecotta.ipynb",
             "Write confident_entropy(logits, margin) -> float: the prediction entropy H = -sum_c p_c ln p_c of each "
             "row of logits [batch, classes] (p the row's softmax), averaged over the rows with H < margin * "
             "ln(classes) only; 0.0 when no row qualifies.", _checks.confident_entropy),
    Exercise("ibn_normalize", "40_ibn_net.ipynb",
             "Write ibn_normalize(x, n_in) -> tensor: activations x [batch, C, H, W] with the first n_in channels "
             "instance-normalized (each image's channel by its own mean and variance over H x W) and the others "
             "batch-normalized as in training (over the batch and H x W); biased variances, eps = 1e-5 added to the "
             "variance, no affine parameters.", _checks.ibn_normalize),
    Exercise("cuda_blur", "41_cuda_unlearnable.ipynb",
             "Write cuda_blur(images, labels, filters) -> tensor: uint8 images [N, C, H, W], labels [N], float filters "
             "[K, C, k, k] (k odd); return float images, image i convolved channel by channel with filters[labels[i]] "
             "(conv2d's cross-correlation, zero padding k // 2), then multiplied by 255 / m, m the largest value of "
             "that filtered image over all its channels and pixels.", _checks.cuda_blur),
    Exercise("stroke_width", "42_deep_aramaic.ipynb",
             "Write stroke_width(mask, steps) -> tensor: ink masks [N, 1, H, W] (1 = ink) with every stroke thickened "
             "(steps > 0) or thinned (steps < 0) |steps| times: each step replaces a pixel by the maximum (thicken) or "
             "minimum (thin) of its 3x3 neighbourhood, pixels outside the image not counting; steps = 0 returns the "
             "masks unchanged.", _checks.stroke_width),
    Exercise("step_macs", "43_robustify.ipynb",
             "Write step_macs(block_macs, trainable) -> float: block_macs lists the forward multiply-adds per image of a "
             "network's blocks, input first, and trainable whether each block's weights train; return the multiply-adds "
             "of one training step per image: the forward pass, plus the forward cost of every block above the lowest "
             "trainable one (the gradient passed to its input), plus the forward cost of every trainable block (its "
             "weights' gradient); the forward pass alone when nothing trains.", _checks.step_macs),
    Exercise("sensitivity_at_specificity", "44_retina_resnet.ipynb",
             "Write sensitivity_at_specificity(scores, labels, spec) -> float: scores [N] (higher = more likely "
             "referable), labels [N] of 0/1 (1 = referable), both present; a threshold t calls score >= t referable. "
             "Among all thresholds (every distinct score, and one above all scores) whose specificity (share of "
             "label-0 cases not called referable) is at least spec, return the highest sensitivity (share of label-1 "
             "cases called referable); no interpolation.", _checks.sensitivity_at_specificity),
    Exercise("kernel_recursion_relu", "45_effective_theory.ipynb",
             "Write kernel_recursion_relu(k1, c_w, c_b, depth) -> list [K^1, ..., K^depth] of a ReLU MLP's kernel: "
             "K^1 = k1 and K^{l+1} = c_b + c_w <relu(z)^2> over z ~ N(0, K^l).", _checks.kernel_recursion_relu),
    Exercise("critical_cw", "45_effective_theory.ipynb",
             "Write critical_cw(activation, xi=0.0, gamma=1.0) -> the C_W (C_b = 0) at which the kernel of a residual "
             "MLP z^{l+1} = xi z^l + gamma (W sigma(z^l) + b) neither grows nor shrinks near K = 0, for activation in "
             "'relu', 'tanh', 'linear' (xi = 0: the plain MLP).", _checks.critical_cw),
    Exercise("annealed_std", "46_gradient_noise.ipynb",
             "Write annealed_std(step, eta, gamma=0.55) -> float or tensor: the standard deviation of the gradient "
             "noise at step `step` (0-based), the square root of the variance eta / (1 + step) ** gamma; for a 1-D "
             "tensor of steps return a tensor of the same shape.", _checks.annealed_std),
    Exercise("linear_drop_rates", "47_revisiting_resnets.ipynb",
             "Write linear_drop_rates(n_blocks, max_rate) -> list of floats: stochastic depth's drop probability for "
             "each of n_blocks residual blocks, numbered 1 to n_blocks from the input, rising linearly with depth from "
             "max_rate / n_blocks at the first block to max_rate at the last.", _checks.linear_drop_rates),
    Exercise("linear_scaled_lr", "48_conadv.ipynb",
             "Write linear_scaled_lr(base_lr, base_batch, batch, warmup_steps, step) -> the learning rate at step "
             "(0-based): the peak base_lr * batch / base_batch (the linear scaling rule), reached by a linear warm-up "
             "peak * (step + 1) / warmup_steps while step < warmup_steps (none when warmup_steps is 0), then held.",
             _checks.linear_scaled_lr),
    Exercise("gradient_ratio", "49_rnn_review.ipynb",
             "Write gradient_ratio(a, k) -> float: for the linear recurrence h_t = a h_{t-1} + x_t, the factor "
             "|d loss / d h_{T-k}| / |d loss / d h_T| (k >= 0 steps back from the last step T).",
             _checks.gradient_ratio),
    Exercise("caption_loss", "50_lrcn.ipynb",
             "Write caption_loss(logits, tokens) -> scalar tensor: a captioner fed tokens[:, :-1] (captions of "
             "token ids, <bos> first, <eos> after the last word, then padding id 0) returned logits "
             "[B, L - 1, vocab], its scores at step t for the word after tokens[:, t]. Return the mean next-word "
             "cross-entropy over the real target words (targets tokens[:, 1:]; a target of 0 is padding and does "
             "not count).", _checks.caption_loss),
    Exercise("segment_means", "51_ts_lstm.ipynb",
             "Write segment_means(f, segments) -> tensor [B, segments, F]: f is [B, T, F] per-frame features and "
             "1 <= segments <= T; cut the frames, in order, into `segments` contiguous segments whose lengths differ "
             "by at most one, the longer first (8 in 3: 3, 3, 2; 7 in 3: 3, 2, 2; as torch.tensor_split), and return "
             "each segment's mean feature vector.", _checks.segment_means),
    Exercise("magnitude_mask", "52_sparse_rnn.ipynb",
             "Write magnitude_mask(weight, density) -> a float tensor shaped like weight: 1.0 at the "
             "round(density * weight.numel()) entries of largest absolute value, 0.0 elsewhere (density in (0, 1]).",
             _checks.magnitude_mask),
    Exercise("clip_loss", "53_clip.ipynb",
             "img and txt are L2-normalized embeddings [B, D] of B matching pairs (row i of each belongs together), "
             "logit_scale a number (the log of the inverse temperature). Write clip_loss(img, txt, logit_scale) -> a "
             "scalar tensor: with s = exp(logit_scale) * img @ txt.T, the mean of the cross-entropy of each row of s "
             "against its matching column and of each column against its matching row.", _checks.clip_loss),
    Exercise("high_frequency_share", "54_srgan.ipynb",
             "Write high_frequency_share(image, cutoff) -> float: for a float image [H, W], the share of its power "
             "|FFT2(image)|^2 at radius round(sqrt(fy^2 + fx^2)) >= cutoff (cycles per image, frequency zero at "
             "[0, 0], radii up to min(H, W) // 2 kept) among its power at radius >= 1; 0.0 when there is none.",
             _checks.high_frequency_share),
    Exercise("skff_fuse", "55_mirnet.ipynb",
             "Write skff_fuse(streams, scores) -> tensor [B, C, H, W]: MIRNet's selective kernel feature fusion. "
             "streams is [n, B, C, H, W] (n streams of features), scores [n, B, C] (a selection score per stream, "
             "image and channel); turn the scores into weights by a softmax across the streams and return the "
             "streams' weighted sum.", _checks.skff_fuse),
    Exercise("receptive_field", "56_simple_segmentation.ipynb",
             "Write receptive_field(layers) -> int: layers is a list of (kernel, stride) pairs, a plain stack of "
             "convolutions or poolings in order; return the side in input pixels of the square one output pixel "
             "of the last layer can see (start from 1; each layer adds (kernel - 1) times the product of the "
             "strides of the layers before it).", _checks.receptive_field),
    Exercise("residual_codes", "57_resgen_tokens.ipynb",
             "x is [N, dim], codebooks [D, K, dim]. Write residual_codes(x, codebooks) -> int64 codes [N, D]: at "
             "level d the index of the code of codebooks[d] nearest (Euclidean) to the residual, x minus the codes "
             "chosen at levels 0 .. d-1 (residual vector quantization).", _checks.residual_codes),
    Exercise("edge_mask", "58_dpenet.ipynb",
             "Write edge_mask(images, quantile) -> bool tensor [N, H, W]: the edges and textures of float images "
             "[N, C, H, W]. For each image take the grey image (the mean over the channels), its gradients along the "
             "rows and columns with torch.gradient, the magnitude sqrt(gx^2 + gy^2), and mark the pixels strictly "
             "above that image's own quantile of its H * W magnitudes (torch.quantile).", _checks.edge_mask),
    Exercise("td_layer_norm", "59_dimr.ipynb",
             "Write td_layer_norm(x, t, T, gamma, beta, a, b) -> tensor [B, N, D]: DiMR's time-dependent layer norm. "
             "Normalize each token of x [B, N, D] over its D features (biased variance, eps 1e-5, no affine), then "
             "scale by w * gamma[0] + (1 - w) * gamma[1] and shift by w * beta[0] + (1 - w) * beta[1], where "
             "w = sigmoid(a * t / T + b) per image (t [B] integer timesteps; gamma, beta [2, D]; a, b floats).",
             _checks.td_layer_norm),
    Exercise("blind_answers", "60_rsvqa.ipynb",
             "train_questions and train_answers are lists of strings (the training questions and their answers), "
             "test_questions a list of questions, order the list of all answers. Write blind_answers(train_questions, "
             "train_answers, test_questions, order) -> a list with, for every test question, the answer given most "
             "often to that same question in training (a tie goes to the answer first in order); a question never "
             "asked in training gets the most frequent training answer overall (ties the same way).",
             _checks.blind_answers),
    Exercise("predict_by_description", "61_classification_by_description.ipynb",
             "sims is a list with one tensor per class: the similarities [N, d_c] of N images to that class's d_c "
             "descriptors. Write predict_by_description(sims) -> int64 [N]: the class whose descriptors have the "
             "highest mean similarity.", _checks.predict_by_description),
    Exercise("hardest_negative_loss", "62_image_text_matching.ipynb",
             "Write hardest_negative_loss(img, txt, margin) -> scalar tensor: VSE++'s ranking loss. img and txt are "
             "[B, D] embeddings of B matching pairs (row i of each belongs together); with s = img @ txt.T, for each "
             "image the largest hinge max(0, margin - s[i, i] + s[i, j]) over the other captions j != i, plus for "
             "each caption the largest hinge max(0, margin - s[j, j] + s[i, j]) over the other images i != j; "
             "return the mean over the batch.", _checks.hardest_negative_loss),
    Exercise("match_best", "63_gist.ipynb",
             "image_embeddings is [N, D], text_embeddings [C, M, D] (M candidate descriptions for each of C classes), "
             "labels [N] (each image's class). Write match_best(image_embeddings, text_embeddings, labels) -> an int64 "
             "tensor [N]: for each image the index (0..M-1) of the candidate of its own class with the largest dot "
             "product with the image (GIST's matching step).", _checks.match_best),
    Exercise("vild_region_probs", "64_vild.ipynb",
             "regions [P, D] and text [C, D] are L2-normalized region and class-name embeddings, background [D] a "
             "learned vector, temperature a number. Write vild_region_probs(regions, text, background, temperature) "
             "-> [P, 1 + C]: column 0 the background, then the classes; a softmax per region over the dot products "
             "(the background vector used as it is) divided by temperature.", _checks.vild_region_probs),
]}


def check(name: str, answer: Callable) -> None:
    """Check ``answer`` for exercise ``name``: prints ✓ or what is wrong."""
    passed(name, answer, verbose=True)


def passed(name: str, answer: Callable, verbose: bool = False) -> bool:
    """Whether ``answer`` solves exercise ``name`` (``verbose``: also print the verdict)."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)}")
    try:
        problem = EXERCISES[name].checker(answer)
    except NotImplementedError:
        problem = "not implemented yet: replace the `raise NotImplementedError` with your code"
    except Exception as e:  # noqa: BLE001 (the learner's code may raise anything; show it)
        last = traceback.extract_tb(e.__traceback__)[-1]
        problem = f"your function raised {type(e).__name__}: {e} (line {last.lineno}: {last.line})"
    if verbose:
        print(f"✓ {name}: correct" if problem is None else f"✗ {name}: {problem}")
    return problem is None


def prompt(name: str) -> str:
    """The task of exercise ``name``."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)}")
    return EXERCISES[name].prompt


def for_notebook(notebook: str) -> list[str]:
    return [e.name for e in EXERCISES.values() if e.notebook == notebook]


def solution(name: str) -> Callable:
    """The reference solution (for teachers and for the tests; the notebooks do not show it)."""
    from . import _solutions

    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)}")
    return getattr(_solutions, name)


__all__ = ["check", "passed", "prompt", "solution", "for_notebook", "EXERCISES"]
