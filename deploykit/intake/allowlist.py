"""What a model from someone else may contain: the security policy's allow-lists, as data.

`deploykit.intake.policy` accepts a model only when everything in it is listed here (or the user
passes `--allow-unsafe-deserialization`). Each family says why its members are safe to load: they
compute tensors from tensors or hold plain settings, and none reads or writes files, opens
connections, imports code by name or runs a callable it was given.

Built from what tf_keras 2.19, Keras 3 and TensorFlow 2.19 really write and register: the configs of
every `tf_keras.applications` and `keras.applications` model (weights=None) and of models holding
each layer family, and the ops of every function of SavedModels exported from those and from
tf.Module models (tf.Example parsing, strings and lookup tables, control flow, random numbers,
linear algebra, image decoding, sparse and ragged tensors). `tests/test_policy_allowlist.py` checks
that every name here exists in tf_keras, Keras 3 or TensorFlow, so the lists stay real.
"""
from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _names_by_namespace(table: dict[str, str]) -> frozenset[str]:
    return frozenset(f"{ns}.{name}" if ns else name for ns, text in table.items() for name in text.split())


# ================================================================================================
# (a) Keras classes: the `class_name` of every dict in a config that has one
# ================================================================================================

# Models and their inputs. Functional and Sequential rebuild a graph of other listed layers from
# their configs.
MODEL_CLASSES = _names("Functional Model Sequential InputLayer")

# Layers that compute tensors from their inputs and their own weights: dense, convolution, pooling,
# recurrent (cells, RNN/Bidirectional/TimeDistributed wrappers, whose inner layers are vetted
# themselves), attention, normalization, merging, reshaping, noise and dropout, activation layers.
# Their configs hold numbers, shapes, activation names (vetted against FUNCTIONS) and nested listed
# objects. Not `Lambda` (marshalled Python code), `TFSMLayer` (loads a SavedModel from a path),
# hub `KerasLayer` (downloads a model), `JaxLayer`/`FlaxLayer` (call an arbitrary function),
# `TorchModuleWrapper` (unpickles a module), `DenseFeatures` (feature columns can read vocabulary
# files), tf_keras' experimental `DynamicEmbedding`/`DynamicLookup`, nor abstract bases (`Layer`,
# `Wrapper`, `AbstractRNNCell`).
LAYER_CLASSES = _names("""
    Activation ActivityRegularization AdaptiveAveragePooling1D AdaptiveAveragePooling2D
    AdaptiveAveragePooling3D AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D Add
    AdditiveAttention AlphaDropout Attention Average AveragePooling1D AveragePooling2D
    AveragePooling3D AvgPool1D AvgPool2D AvgPool3D BatchNormalization Bidirectional Concatenate
    Conv1D Conv1DTranspose Conv2D Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM1D ConvLSTM2D
    ConvLSTM3D Convolution1D Convolution1DTranspose Convolution2D Convolution2DTranspose
    Convolution3D Convolution3DTranspose Cropping1D Cropping2D Cropping3D Dense DepthwiseConv1D
    DepthwiseConv2D Dot Dropout ELU EinsumDense Embedding Flatten GRU GRUCell GaussianDropout
    GaussianNoise GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
    GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D
    GlobalMaxPool3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GroupNormalization
    GroupQueryAttention Identity LSTM LSTMCell LayerNormalization LeakyReLU LocallyConnected1D
    LocallyConnected2D Masking MaxPool1D MaxPool2D MaxPool3D MaxPooling1D MaxPooling2D
    MaxPooling3D Maximum Minimum MultiHeadAttention Multiply PReLU Permute RMSNormalization RNN
    RandomFourierFeatures ReLU RepeatVector Reshape ReversibleEmbedding SeparableConv1D
    SeparableConv2D SeparableConvolution1D SeparableConvolution2D SimpleRNN SimpleRNNCell
    Softmax SpatialDropout1D SpatialDropout2D SpatialDropout3D SpectralNormalization
    StackedRNNCells Subtract SyncBatchNormalization ThresholdedReLU TimeDistributed
    UnitNormalization UpSampling1D UpSampling2D UpSampling3D ZeroPadding1D ZeroPadding2D
    ZeroPadding3D
""")

# Preprocessing and augmentation layers. Lookup and vectorization layers are listed for their
# INLINE form (a vocabulary list in the config, or one kept inside the .keras archive); a
# vocabulary, IDF weights or anything else given as a path or URL is refused by PATH_KEYS and the
# URL rule in the policy, whatever the class.
PREPROCESSING_CLASSES = _names("""
    AugMix AutoContrast CategoryEncoding CenterCrop ContrastLimitedAdaptiveHistogramEqualization
    CutMix Discretization Equalization HashedCrossing Hashing IntegerLookup MaxNumBoundingBoxes
    MelSpectrogram MixUp Normalization Pipeline RandAugment RandomBrightness
    RandomColorDegeneration RandomColorJitter RandomContrast RandomCrop RandomElasticTransform
    RandomErasing RandomFlip RandomGaussianBlur RandomGrayscale RandomHeight RandomHue
    RandomInvert RandomPerspective RandomPosterization RandomRotation RandomSaturation
    RandomSharpness RandomShear RandomTranslation RandomWidth RandomZoom Rescaling Resizing
    STFTSpectrogram Solarization StringLookup TextVectorization
""")

# tf_keras' op layers, written when a functional model applies TensorFlow functions to Keras
# tensors (`x + 1`, `tf.reshape(x, ...)`, `x[:, 0]`, `ragged.to_tensor()`). Each names what it
# calls; the policy accepts one only when that name is listed: TFOpLambda/SlicingOpLambda in
# TF_FUNCTIONS, InstanceProperty/InstanceMethod in KERAS_TENSOR_ATTRIBUTES, ClassMethod in
# RAGGED_CLASS_METHODS. (A TFOpLambda naming `io.write_file` or `io.gfile.remove` is refused.)
TF_OP_LAYER_CLASSES = _names("TFOpLambda SlicingOpLambda InstanceProperty InstanceMethod ClassMethod")

# Layers that tf_keras and Keras 3 define inside their own applications (ConvNeXt, Inception-ResNet):
# a learned per-channel scale, residual drop-path, and a weighted sum.
APPLICATION_CLASSES = _names("LayerScale StochasticDepth CustomScaleLayer")

# Keras 3 operations (keras.src.ops.*), written when a functional Keras 3 model applies `keras.ops`
# (or `+`, `*`, `[...]`) to Keras tensors: pure tensor functions. Not the ones that take a Python
# callable (Cond, WhileLoop, ForiLoop, Map, Scan, AssociativeScan, Switch, VectorizedMap, JVP).
KERAS3_OP_CLASSES = _names("""
    Abs Absolute AdaptiveAveragePool AdaptiveMaxPool Add AffineTransform All AllClose Amax Amin
    Angle Any Append Arange Arccos Arccosh Arcsin Arcsinh Arctan Arctan2 Arctanh Argmax Argmin
    Argpartition Argsort Array ArraySplit Average AveragePool BatchNorm BinaryCrossentropy
    Bincount BitwiseAnd BitwiseInvert BitwiseLeftShift BitwiseNot BitwiseOr BitwiseRightShift
    BitwiseXor BroadcastTo CDist CTCDecode CTCLoss Cast CategoricalCrossentropy Cbrt Ceil Celu
    Cholesky CholeskyInverse Clip Concatenate Conj Conjugate Conv ConvTranspose ConvertToTensor
    Copy Corrcoef Correlate Cos Cosh CountNonzero CropImages Cross Cumprod Cumsum Deg2rad
    DepthToSpace DepthwiseConv Det Diag Diagflat Diagonal Diff Digitize Divide DivideNoNan Dot
    DotProductAttention Dsplit Dstack Eig Eigh Einsum ElasticTransform Elu EmptyLike Equal Erf
    Erfc Erfinv Exp Exp2 ExpandDims Expm1 ExtractPatches ExtractSequences FFT FFT2 Fabs Flip
    Fliplr Flipud Floor FloorDivide Fmax Fmin Fmod Fold Full FullLike GaussianBlur Gcd Gelu
    Geomspace GetItem Glu Greater GreaterEqual HSVToRGB HardShrink HardSigmoid HardSilu HardTanh
    Heaviside Histogram Hsplit Hstack Hypot I0 IFFT2 IRFFT ISTFT Imag InTopK Inner Inv IsIn
    Isclose Isfinite Isinf Isnan Isneginf Isposinf Isreal Kron LayerNorm Lcm Ldexp LeakyRelu
    LeftShift Less LessEqual Linspace Log Log10 Log1p Log2 LogSigmoid LogSoftmax Logaddexp
    Logaddexp2 Logdet LogicalAnd LogicalNot LogicalOr LogicalXor Logspace Logsumexp Lstsq
    LuFactor MapCoordinates Matmul MatrixRank Max MaxPool Maximum Mean Median Meshgrid Min
    Minimum Mod Moments Moveaxis MultiHot Multiply NanToNum Nanargmax Nanargmin Nancumprod
    Nancumsum Nanmax Nanmean Nanmedian Nanmin Nanpercentile Nanprod Nanquantile Nanstd Nansum
    Nanvar Ndim Negative Nextafter Nonzero Norm Normalize NotEqual OneHot OnesLike Outer PSNR
    Pad PadImages Percentile PerspectiveTransform Pinv Polar Power Prod Ptp Qr Quantile RFFT
    RGBToGrayscale RGBToHSV RMSNorm Rad2deg Ravel Real Rearrange Reciprocal Relu Relu6 Repeat
    Reshape Resize RightShift Roll Rot90 Round Rsqrt SSIM STFT SVD SaturateCast
    ScaleAndTranslate Scatter ScatterUpdate SearchSorted SegmentMax SegmentMin SegmentProd
    SegmentReduction SegmentSum Select Selu SeparableConv Sigmoid Sign Signbit Silu Sin Sinc
    Sinh Size Slice SliceUpdate Slogdet SobelEdges SoftShrink Softmax Softplus Softsign Solve
    SolveTriangular Sort SpaceToDepth SparseCategoricalCrossentropy SparsePlus SparseSigmoid
    Sparsemax Split Sqrt Square Squareplus Squeeze Stack Std StopGradient Subtract Sum Swapaxes
    Take TakeAlongAxis Tan Tanh TanhShrink Tensordot Threshold Tile TopK Trace Transpose
    Trapezoid Tril Triu TrueDivide Trunc Unfold Unique UnravelIndex Unstack Vander Var Vdot View
    ViewAsComplex ViewAsReal Vsplit Vstack Where ZerosLike
""")

# Weight initializers (tf_keras, Keras 3, and TensorFlow's own `tf.initializers` classes, which
# tf_keras writes with module tensorflow.python.ops.init_ops_v2): they draw the initial values.
INITIALIZER_CLASSES = _names("""
    Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity IdentityInitializer
    LecunNormal LecunUniform Ones Orthogonal OrthogonalInitializer RandomNormal RandomUniform
    STFT STFTInitializer TruncatedNormal VarianceScaling Zeros
""")

# Weight regularizers and constraints: a penalty or a projection of a weight tensor.
REGULARIZER_CONSTRAINT_CLASSES = _names("""
    L1 L1L2 L2 MaxNorm MinMaxNorm NonNeg OrthogonalRegularizer RadialConstraint UnitNorm
""")

# Losses, metrics, optimizers and learning-rate schedules, found in `compile_config` (which the
# loader ignores: models load with compile=False) and vetted like the rest. Plain numbers and
# nested listed objects; MeanMetricWrapper's function is vetted against FUNCTIONS.
TRAINING_CLASSES = _names("""
    AUC Accuracy Adadelta Adafactor Adagrad Adam AdamW Adamax BinaryAccuracy BinaryCrossentropy
    BinaryFocalCrossentropy BinaryIoU CTC CategoricalAccuracy CategoricalCrossentropy
    CategoricalFocalCrossentropy CategoricalGeneralizedCrossEntropy CategoricalHinge Circle
    ConcordanceCorrelation CosineDecay CosineDecayRestarts CosineSimilarity Dice
    ExponentialDecay F1Score FBetaScore FalseNegatives FalsePositives Ftrl Hinge Huber
    InverseTimeDecay IoU KLDivergence Lamb Lion LogCosh LogCoshError LossScaleOptimizer Mean
    MeanAbsoluteError MeanAbsolutePercentageError MeanIoU MeanMetricWrapper MeanRelativeError
    MeanSquaredError MeanSquaredLogarithmicError MeanTensor MultiOptimizer Muon Nadam OneHotIoU
    OneHotMeanIoU OptimizerMap PearsonCorrelation PiecewiseConstantDecay Poisson PolynomialDecay
    Precision PrecisionAtRecall R2Score RMSprop Recall RecallAtPrecision RootMeanSquaredError
    SGD ScheduleFreeAdamW SensitivityAtSpecificity SparseCategoricalAccuracy
    SparseCategoricalCrossentropy SparseTopKCategoricalAccuracy SpecificityAtSensitivity
    SquaredHinge Sum TopKCategoricalAccuracy TrueNegatives TruePositives Tversky
""")

# Dtype policies, quantization settings and seed generators: names, numbers, nested policies.
# Not GPTQConfig/AWQConfig (they carry a dataset and a tokenizer).
DTYPE_POLICY_CLASSES = _names("""
    AWQDTypePolicy AbsMaxQuantizer DTypePolicy DTypePolicyMap Float8QuantizationConfig
    FloatDTypePolicy GPTQDTypePolicy Int4DTypePolicy Int4QuantizationConfig
    Int8QuantizationConfig Policy QuantizedDTypePolicy QuantizedFloat8DTypePolicy SeedGenerator
""")

KERAS_CLASSES = (MODEL_CLASSES | LAYER_CLASSES | PREPROCESSING_CLASSES | TF_OP_LAYER_CLASSES | APPLICATION_CLASSES
                 | KERAS3_OP_CLASSES | INITIALIZER_CLASSES | REGULARIZER_CONSTRAINT_CLASSES | TRAINING_CLASSES
                 | DTYPE_POLICY_CLASSES)

# The `class_name`s Keras' serializers use for values rather than classes; each decodes to plain
# data (a Keras tensor placeholder, a constant, bytes, a slice, a tuple, a shape, a type spec).
# `__lambda__` (marshalled code) is not here.
SERIALIZATION_MARKERS = _names("""
    __keras_tensor__ __tensor__ __numpy__ __bytes__ __ellipsis__ __slice__ __tuple__ __typespec__
    TensorShape TypeSpec CompositeTensor
""")

# Type specs a config may name: in `__typespec__` (spec_name and module) and in the legacy HDF5
# `TypeSpec` marker (a name in TensorFlow's type-spec registry). Tensor, ragged and sparse specs
# are shapes and dtypes.
TYPE_SPEC_NAMES = _names("TensorSpec RaggedTensorSpec SparseTensorSpec")
TYPE_SPEC_MODULES = _names("""
    tensorflow.python.framework.tensor tensorflow.python.framework.tensor_spec
    tensorflow.python.ops.ragged.ragged_tensor tensorflow.python.framework.sparse_tensor
""")
TYPE_SPEC_REGISTRY_NAMES = _names("tf.TensorSpec tf.RaggedTensorSpec tf.SparseTensorSpec")

# `registered_name`s other than None or the class's own name that Keras itself writes.
REGISTERED_NAMES = _names("Custom>CustomScaleLayer")

# What tf_keras' op layers may call. TF_FUNCTIONS: TensorFlow API names (as TFOpLambda writes them,
# e.g. "math.multiply", "__operators__.add"), each a function from tensors to tensors. The
# namespaces math, nn, linalg, signal, image, strings, bitwise, sparse, ragged, sets, random and
# dtypes are taken whole (every function TensorFlow 2.19 exports there), minus the few that change
# global state or read a file (random.set_seed, ...generator, random.fixed_unigram_candidate_sampler
# with its vocab_file, ragged.map_flat_values, which takes a callable); top-level names are picked
# one by one. Not io.*, gfile, print, py_function, numpy_function, load_library, saved_model.*,
# summary.*, debugging.*, config.*, control flow taking callables (cond, while_loop, map_fn ...).
TF_FUNCTIONS = _names_by_namespace({
    "": """
    abs acos acosh add add_n approx_top_k argmax argmin argsort asin asinh atan atan2 atanh
    batch_to_space bitcast boolean_mask broadcast_dynamic_shape broadcast_to cast
    clip_by_global_norm clip_by_norm clip_by_value complex concat constant convert_to_tensor cos
    cosh cumsum divide dynamic_partition dynamic_stitch edit_distance eig eigvals einsum
    ensure_shape equal exp expand_dims extract_volume_patches eye fftnd fill fingerprint floor
    gather gather_nd greater greater_equal guarantee_const histogram_fixed_width
    histogram_fixed_width_bins identity identity_n ifftnd irfftnd less less_equal linspace
    logical_and logical_not logical_or matmul matrix_square_root maximum meshgrid minimum multiply
    negative norm not_equal one_hot ones ones_like pad parallel_stack pow range rank realdiv
    reduce_all reduce_any reduce_logsumexp reduce_max reduce_mean reduce_min reduce_prod reduce_sum
    repeat reshape reverse reverse_sequence rfftnd roll round saturate_cast scalar_mul scatter_nd
    searchsorted sequence_mask shape shape_n sigmoid sign sin sinh size slice sort space_to_batch
    space_to_batch_nd split sqrt square squeeze stack stop_gradient strided_slice subtract tan tanh
    tensor_scatter_nd_add tensor_scatter_nd_max tensor_scatter_nd_min tensor_scatter_nd_sub
    tensor_scatter_nd_update tensordot tile transpose truediv truncatediv truncatemod unique
    unique_with_counts unravel_index unstack where zeros zeros_like
    """,
    "math": """
    abs accumulate_n acos acosh add add_n angle approx_max_k approx_min_k argmax argmin asin
    asinh atan atan2 atanh bessel_i0 bessel_i0e bessel_i1 bessel_i1e betainc bincount ceil
    confusion_matrix conj cos cosh count_nonzero cumprod cumsum cumulative_logsumexp digamma
    divide divide_no_nan equal erf erfc erfcinv erfinv exp expm1 floor floordiv floormod greater
    greater_equal igamma igammac imag in_top_k invert_permutation is_finite is_inf is_nan
    is_non_decreasing is_strictly_increasing l2_normalize lbeta less less_equal lgamma log log1p
    log_sigmoid log_softmax logical_and logical_not logical_or logical_xor maximum minimum mod
    multiply multiply_no_nan ndtri negative nextafter not_equal polygamma polyval pow real
    reciprocal reciprocal_no_nan reduce_all reduce_any reduce_euclidean_norm reduce_logsumexp
    reduce_max reduce_mean reduce_min reduce_prod reduce_std reduce_sum reduce_variance rint
    round rsqrt scalar_mul segment_max segment_mean segment_min segment_prod segment_sum sigmoid
    sign sin sinh sobol_sample softmax softplus softsign special.bessel_i0 special.bessel_i0e
    special.bessel_i1 special.bessel_i1e special.bessel_j0 special.bessel_j1 special.bessel_k0
    special.bessel_k0e special.bessel_k1 special.bessel_k1e special.bessel_y0 special.bessel_y1
    special.dawsn special.expint special.fresnel_cos special.fresnel_sin special.spence sqrt
    square squared_difference subtract tan tanh top_k truediv unsorted_segment_max
    unsorted_segment_mean unsorted_segment_min unsorted_segment_prod unsorted_segment_sqrt_n
    unsorted_segment_sum xdivy xlog1py xlogy zero_fraction zeta
    """,
    "nn": """
    all_candidate_sampler approx_max_k approx_min_k atrous_conv2d atrous_conv2d_transpose
    avg_pool avg_pool1d avg_pool2d avg_pool3d batch_norm_with_global_normalization
    batch_normalization bias_add collapse_repeated compute_accidental_hits compute_average_loss
    conv1d conv1d_transpose conv2d conv2d_transpose conv3d conv3d_transpose conv_transpose
    convolution crelu ctc_beam_search_decoder ctc_greedy_decoder ctc_loss ctc_unique_labels
    depth_to_space depthwise_conv2d depthwise_conv2d_backprop_filter
    depthwise_conv2d_backprop_input dilation2d dropout elu embedding_lookup
    embedding_lookup_sparse erosion2d experimental.general_dropout
    experimental.stateless_dropout fractional_avg_pool
    fractional_max_pool gelu in_top_k isotonic_regression l2_loss l2_normalize leaky_relu
    learned_unigram_candidate_sampler local_response_normalization log_poisson_loss log_softmax
    lrn max_pool max_pool1d max_pool2d max_pool3d max_pool_with_argmax moments nce_loss
    normalize_moments pool relu relu6 safe_embedding_lookup_sparse sampled_softmax_loss
    scale_regularization_loss selu separable_conv2d sigmoid sigmoid_cross_entropy_with_logits
    silu softmax softmax_cross_entropy_with_logits softplus softsign space_to_batch
    space_to_depth sparse_softmax_cross_entropy_with_logits sufficient_statistics swish tanh
    top_k weighted_cross_entropy_with_logits weighted_moments with_space_to_batch zero_fraction
    """,
    "linalg": """
    adjoint band_part banded_triangular_solve cholesky cholesky_solve cross det diag diag_part
    eig eigh eigh_tridiagonal eigvals eigvalsh einsum expm eye global_norm inv l2_normalize
    logdet logm lstsq lu lu_matrix_inverse lu_reconstruct lu_solve matmul matrix_rank
    matrix_transpose matvec norm normalize pinv qr set_diag slogdet solve sqrtm svd tensor_diag
    tensor_diag_part tensordot trace triangular_solve tridiagonal_matmul tridiagonal_solve
    """,
    "signal": """
    dct fft fft2d fft3d fftnd fftshift frame hamming_window hann_window idct ifft ifft2d ifft3d
    ifftnd ifftshift inverse_mdct inverse_stft inverse_stft_window_fn irfft irfft2d irfft3d
    irfftnd kaiser_bessel_derived_window kaiser_window linear_to_mel_weight_matrix mdct
    mfccs_from_log_mel_spectrograms overlap_and_add rfft rfft2d rfft3d rfftnd stft vorbis_window
    """,
    "image": """
    adjust_brightness adjust_contrast adjust_gamma adjust_hue adjust_jpeg_quality
    adjust_saturation central_crop combined_non_max_suppression convert_image_dtype
    crop_and_resize crop_to_bounding_box decode_and_crop_jpeg decode_bmp decode_gif decode_image
    decode_jpeg decode_png draw_bounding_boxes encode_jpeg encode_png extract_glimpse
    extract_jpeg_shape extract_patches flip_left_right flip_up_down
    generate_bounding_box_proposals grayscale_to_rgb hsv_to_rgb image_gradients is_jpeg
    non_max_suppression non_max_suppression_overlaps non_max_suppression_padded
    non_max_suppression_with_scores pad_to_bounding_box per_image_standardization psnr
    random_brightness random_contrast random_crop random_flip_left_right random_flip_up_down
    random_hue random_jpeg_quality random_saturation resize resize_with_crop_or_pad
    resize_with_pad rgb_to_grayscale rgb_to_hsv rgb_to_yiq rgb_to_yuv rot90
    sample_distorted_bounding_box sobel_edges ssim ssim_multiscale stateless_random_brightness
    stateless_random_contrast stateless_random_crop stateless_random_flip_left_right
    stateless_random_flip_up_down stateless_random_hue stateless_random_jpeg_quality
    stateless_random_saturation stateless_sample_distorted_bounding_box total_variation
    transpose yiq_to_rgb yuv_to_rgb
    """,
    "strings": """
    as_string bytes_split format join length lower ngrams reduce_join regex_full_match
    regex_replace split strip substr to_hash_bucket to_hash_bucket_fast to_hash_bucket_strong
    to_number unicode_decode unicode_decode_with_offsets unicode_encode unicode_script
    unicode_split unicode_split_with_offsets unicode_transcode unsorted_segment_join upper
    """,
    "bitwise": """
    bitwise_and bitwise_or bitwise_xor invert left_shift right_shift
    """,
    "sparse": """
    add bincount concat cross cross_hashed expand_dims eye fill_empty_rows from_dense map_values
    mask maximum minimum reduce_max reduce_sum reorder reset_shape reshape retain sampled_addmm
    segment_mean segment_sqrt_n segment_sum slice softmax sparse_dense_matmul split to_dense
    to_indicator transpose
    """,
    "ragged": """
    boolean_mask constant cross cross_hashed range row_splits_to_segment_ids
    segment_ids_to_row_splits stack stack_dynamic_partitions
    """,
    "sets": """
    difference intersection size union
    """,
    "random": """
    all_candidate_sampler categorical create_rng_state experimental.create_rng_state
    experimental.index_shuffle experimental.stateless_fold_in experimental.stateless_shuffle
    experimental.stateless_split fold_in gamma
    learned_unigram_candidate_sampler log_uniform_candidate_sampler normal poisson shuffle split
    stateless_binomial stateless_categorical stateless_gamma stateless_normal
    stateless_parameterized_truncated_normal stateless_poisson stateless_truncated_normal
    stateless_uniform truncated_normal uniform uniform_candidate_sampler
    """,
    "dtypes": """
    cast complex saturate_cast
    """,
    "__operators__": """
    add eq getitem ne ragged_getitem
    """,
})
# tf_keras' delegated RaggedKerasTensor/SparseKerasTensor properties and methods
# (tf_keras/src/layers/core/tf_op_layer.py): accessors and conversions of ragged/sparse tensors.
KERAS_TENSOR_ATTRIBUTES = _names("""
    values flat_values row_splits nested_row_splits value_rowids nested_value_rowids nrows row_starts
    row_limits row_lengths nested_row_lengths bounding_shape with_values with_flat_values
    with_row_splits_dtype merge_dims to_tensor to_sparse indices dense_shape
""")
# tf_keras' dispatched tf.RaggedTensor class methods (same file): constructors from tensors.
RAGGED_CLASS_METHODS = _names("""
    from_value_rowids from_row_splits from_row_lengths from_row_starts from_row_limits
    from_uniform_row_length from_nested_value_rowids from_nested_row_splits from_nested_row_lengths
    from_tensor from_sparse
""")
RAGGED_CLASS_SYMBOLS = _names("RaggedTensor")

# ================================================================================================
# (b) Modules a config may name (`module`), exactly as tf_keras 2.19 and Keras 3 write them
# ================================================================================================

# Keras' public namespaces (what both write for exported classes, e.g. "keras.layers"); the modules
# of the listed classes that are not exported (Functional, op layers, application layers, Keras 3
# ops); TensorFlow's initializer module (tf.initializers classes in tf_keras configs); and the
# modules of the listed type specs. Loading resolves a listed class inside these; nothing else is
# imported. (tf_keras imports whatever module a config names, so a prefix match is not enough:
# `tf_keras_evil` or `tensorflow_hub` are other packages.)
KERAS_MODULES = _names("""
    keras keras.layers keras.layers.experimental keras.initializers keras.regularizers
    keras.constraints keras.losses keras.metrics keras.optimizers keras.optimizers.legacy
    keras.optimizers.schedules keras.mixed_precision keras.dtype_policies keras.quantizers
    keras.random keras.src.models.functional
    keras.src.applications.convnext keras.src.applications.inception_resnet_v2
    keras.src.ops.core keras.src.ops.einops keras.src.ops.image keras.src.ops.linalg
    keras.src.ops.math keras.src.ops.nn keras.src.ops.numpy
    tf_keras.src.engine.functional tf_keras.src.layers.core.tf_op_layer tf_keras.src.applications.convnext
    tf_keras.src.applications.inception_resnet_v2
    tensorflow.python.ops.init_ops_v2
""") | TYPE_SPEC_MODULES

# The module a serialized function may name: both libraries write "builtins" and then look the
# name up in their own activations, losses and metrics modules; a function serialized on its own
# names its public namespace or the module that defines it.
FUNCTION_MODULES = _names("""
    builtins keras.activations keras.losses keras.metrics
    keras.src.activations.activations keras.src.losses.losses keras.src.metrics.accuracy_metrics
    keras.src.metrics.correlation_metrics tf_keras.src.activations tf_keras.src.losses
    tf_keras.src.metrics.accuracy_metrics
""")

# ================================================================================================
# (c) Functions a config may name (serialized functions, activation strings)
# ================================================================================================

# Activations: elementwise or softmax-like tensor functions (tf_keras and Keras 3 names).
ACTIVATION_FUNCTIONS = _names("""
    celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh
    leaky_relu linear log_sigmoid log_softmax mish relu relu6 selu sigmoid silu soft_shrink
    softmax softplus softsign sparse_plus sparse_sigmoid sparsemax squareplus swish tanh
    tanh_shrink threshold
""")
# Loss and metric functions (compile configs, MeanMetricWrapper): reductions of two tensors.
LOSS_METRIC_FUNCTIONS = _names("""
    KLD MAE MAPE MSE MSLE binary_accuracy binary_crossentropy binary_focal_crossentropy
    categorical_accuracy categorical_crossentropy categorical_focal_crossentropy
    categorical_generalized_cross_entropy categorical_hinge circle concordance_correlation
    cosine_similarity ctc dice hinge huber kl_divergence kld kullback_leibler_divergence
    log_cosh logcosh mae mape mean_absolute_error mean_absolute_percentage_error
    mean_squared_error mean_squared_logarithmic_error mse msle pearson_correlation poisson
    sparse_categorical_accuracy sparse_categorical_crossentropy
    sparse_top_k_categorical_accuracy squared_hinge top_k_categorical_accuracy tversky
""")
FUNCTIONS = ACTIVATION_FUNCTIONS | LOSS_METRIC_FUNCTIONS

# Config keys whose string value is an activation name, resolved by Keras' activations module.
ACTIVATION_KEYS = _names("activation recurrent_activation")

# Layer settings that, as strings, name a file or URL read while the model is built (a lookup
# layer's vocabulary file, a TFSMLayer's folder, a hub handle ...). Their inline forms (lists,
# numbers) are fine.
PATH_KEYS = ("vocabulary", "idf_weights", "filepath", "handle", "path", "url")

# Why well-known classes are refused (for the message; anything unlisted is refused all the same).
REFUSED_CLASSES = {
    "Lambda": "carries Python code",
    "__lambda__": "carries Python code",
    "TFSMLayer": "loads an external SavedModel at load time",
    "KerasLayer": "loads a TF Hub model at load time",
    "JaxLayer": "calls an arbitrary function",
    "FlaxLayer": "calls an arbitrary function",
    "TorchModuleWrapper": "unpickles a torch module",
    "DenseFeatures": "feature columns can read vocabulary files",
}

# ================================================================================================
# (d) SavedModel graph ops: every op of the graph and of every function in its library
# ================================================================================================

# Shapes, constants, placeholders, slicing, gathering, scattering, padding, quantize/dequantize:
# compute a tensor from tensors (gen_array_ops). Not ImmutableConst, which memory-maps a file
# named in its attributes.
ARRAY_OPS = _names("""
    BatchMatrixBandPart BatchMatrixDiag BatchMatrixDiagPart BatchMatrixSetDiag BatchToSpace
    BatchToSpaceND Bitcast BroadcastArgs BroadcastGradientArgs BroadcastTo CheckNumerics
    CheckNumericsV2 Concat ConcatOffset ConcatV2 ConjugateTranspose Const DebugGradientIdentity
    DebugGradientRefIdentity DeepCopy DepthToSpace Dequantize Diag DiagPart EditDistance Empty
    EnsureShape ExpandDims ExtractImagePatches ExtractVolumePatches FakeQuantWithMinMaxArgs
    FakeQuantWithMinMaxArgsGradient FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsGradient
    FakeQuantWithMinMaxVarsPerChannel FakeQuantWithMinMaxVarsPerChannelGradient Fill Fingerprint
    Gather GatherNd GatherV2 GuaranteeConst Identity IdentityN InplaceAdd InplaceSub
    InplaceUpdate InvertPermutation ListDiff LowerBound MatrixBandPart MatrixDiag MatrixDiagPart
    MatrixDiagPartV2 MatrixDiagPartV3 MatrixDiagV2 MatrixDiagV3 MatrixSetDiag MatrixSetDiagV2
    MatrixSetDiagV3 MirrorPad MirrorPadGrad OneHot OnesLike Pack Pad PadV2 ParallelConcat
    Placeholder PlaceholderV2 PlaceholderWithDefault PreventGradient QuantizeAndDequantize
    QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4
    QuantizeAndDequantizeV4Grad QuantizeV2 QuantizedConcat QuantizedInstanceNorm
    QuantizedReshape Rank RefIdentity Reshape ResourceStridedSliceAssign Reverse ReverseSequence
    ReverseV2 ScatterNd ScatterNdNonAliasingAdd Shape ShapeN Size Slice Snapshot SpaceToBatch
    SpaceToBatchND SpaceToDepth Split SplitV Squeeze StopGradient StridedSlice
    StridedSliceAssign StridedSliceGrad TensorScatterAdd TensorScatterMax TensorScatterMin
    TensorScatterSub TensorScatterUpdate TensorStridedSliceUpdate Tile TileGrad Transpose Unique
    UniqueV2 UniqueWithCounts UniqueWithCountsV2 Unpack UnravelIndex UpperBound Where ZerosLike
""")

# Arithmetic, comparisons, reductions, matmul, special functions, bit operations, uniform
# quantization (gen_math_ops, gen_special_math_ops, gen_bitwise_ops, gen_uniform_quant_ops):
# pure functions of their inputs.
MATH_OPS = _names("""
    Abs AccumulateNV2 Acos Acosh Add AddN AddV2 All Angle Any ApproximateEqual ArgMax ArgMin
    Asin Asinh Atan Atan2 Atanh BatchMatMul BatchMatMulV2 BatchMatMulV3 BesselI0 BesselI0e
    BesselI1 BesselI1e BesselJ0 BesselJ1 BesselK0 BesselK0e BesselK1 BesselK1e BesselY0 BesselY1
    Betainc Bincount BitwiseAnd BitwiseOr BitwiseXor Bucketize Cast Ceil ClipByValue Complex
    ComplexAbs Conj Cos Cosh Cross Cumprod Cumsum CumulativeLogsumexp Dawsn DenseBincount
    Digamma Div DivNoNan Equal Erf Erfc Erfinv EuclideanNorm Exp Expint Expm1 Floor FloorDiv
    FloorMod FresnelCos FresnelSin Greater GreaterEqual HistogramFixedWidth Igamma IgammaGradA
    Igammac Imag Inv InvGrad Invert IsFinite IsInf IsNan LeftShift Less LessEqual Lgamma
    LinSpace Log Log1p LogicalAnd LogicalNot LogicalOr MatMul Max Maximum Mean Min Minimum Mod
    Mul MulNoNan Ndtri Neg NextAfter NotEqual Polygamma PopulationCount Pow Prod
    QuantizeDownAndShrinkRange QuantizedAdd QuantizedMatMul QuantizedMul RaggedBincount Range
    Real RealDiv Reciprocal ReciprocalGrad RequantizationRange RequantizationRangePerChannel
    Requantize RequantizePerChannel RightShift Rint Round Rsqrt RsqrtGrad SegmentMax
    SegmentMaxV2 SegmentMean SegmentMin SegmentMinV2 SegmentProd SegmentProdV2 SegmentSum
    SegmentSumV2 Select SelectV2 Sigmoid SigmoidGrad Sign Sin Sinh SobolSample SparseBincount
    SparseMatMul SparseSegmentMean SparseSegmentMeanGrad SparseSegmentMeanGradV2
    SparseSegmentMeanWithNumSegments SparseSegmentSqrtN SparseSegmentSqrtNGrad
    SparseSegmentSqrtNGradV2 SparseSegmentSqrtNWithNumSegments SparseSegmentSum
    SparseSegmentSumGrad SparseSegmentSumGradV2 SparseSegmentSumWithNumSegments Spence Sqrt
    SqrtGrad Square SquaredDifference Sub Sum Tan Tanh TanhGrad TruncateDiv TruncateMod
    UniformDequantize UniformQuantize UniformQuantizedAdd UniformQuantizedClipByValue
    UniformQuantizedConvolution UniformQuantizedConvolutionHybrid UniformQuantizedDot
    UniformQuantizedDotHybrid UniformRequantize UnsortedSegmentMax UnsortedSegmentMin
    UnsortedSegmentProd UnsortedSegmentSum Xdivy Xlog1py Xlogy Zeta
""")

# Convolutions, pooling, activations, normalization, recurrent cells (CPU and cuDNN kernels;
# tf_keras saves a cuDNN branch beside the CPU one), CTC, k-means initialization (gen_nn_ops,
# gen_rnn_ops, gen_cudnn_rnn_ops, gen_ctc_ops, gen_clustering_ops): pure functions of their inputs.
NN_OPS = _names("""
    ApproxTopK AvgPool AvgPool3D AvgPool3DGrad AvgPoolGrad BatchNormWithGlobalNormalization
    BatchNormWithGlobalNormalizationGrad BiasAdd BiasAddGrad BiasAddV1 BlockLSTM BlockLSTMGrad
    BlockLSTMGradV2 BlockLSTMV2 CTCBeamSearchDecoder CTCGreedyDecoder CTCLoss CTCLossV2 Conv
    Conv2D Conv2DBackpropFilter Conv2DBackpropFilterV2 Conv2DBackpropInput Conv2DBackpropInputV2
    Conv3D Conv3DBackpropFilter Conv3DBackpropFilterV2 Conv3DBackpropInput Conv3DBackpropInputV2
    CudnnRNN CudnnRNNBackprop CudnnRNNBackpropV2 CudnnRNNBackpropV3 CudnnRNNCanonicalToParams
    CudnnRNNCanonicalToParamsV2 CudnnRNNParamsSize CudnnRNNParamsToCanonical
    CudnnRNNParamsToCanonicalV2 CudnnRNNV2 CudnnRNNV3 DataFormatDimMap DataFormatVecPermute
    DepthwiseConv2dNative DepthwiseConv2dNativeBackpropFilter DepthwiseConv2dNativeBackpropInput
    Dilation2D Dilation2DBackpropFilter Dilation2DBackpropInput Elu EluGrad FractionalAvgPool
    FractionalAvgPoolGrad FractionalMaxPool FractionalMaxPoolGrad FusedBatchNorm
    FusedBatchNormGrad FusedBatchNormGradV2 FusedBatchNormGradV3 FusedBatchNormV2
    FusedBatchNormV3 FusedPadConv2D FusedResizeAndPadConv2D GRUBlockCell GRUBlockCellGrad InTopK
    InTopKV2 IsotonicRegression KMC2ChainInitialization KmeansPlusPlusInitialization L2Loss LRN
    LRNGrad LSTMBlockCell LSTMBlockCellGrad LeakyRelu LeakyReluGrad LogSoftmax MaxPool MaxPool3D
    MaxPool3DGrad MaxPool3DGradGrad MaxPoolGrad MaxPoolGradGrad MaxPoolGradGradV2
    MaxPoolGradGradWithArgmax MaxPoolGradV2 MaxPoolGradWithArgmax MaxPoolV2 MaxPoolWithArgmax
    NearestNeighbors NthElement QuantizedAvgPool QuantizedBatchNormWithGlobalNormalization
    QuantizedBiasAdd QuantizedConv2D QuantizedConv2DAndRelu QuantizedConv2DAndReluAndRequantize
    QuantizedConv2DAndRequantize QuantizedConv2DPerChannel QuantizedConv2DWithBias
    QuantizedConv2DWithBiasAndRelu QuantizedConv2DWithBiasAndReluAndRequantize
    QuantizedConv2DWithBiasAndRequantize QuantizedConv2DWithBiasSignedSumAndReluAndRequantize
    QuantizedConv2DWithBiasSumAndRelu QuantizedConv2DWithBiasSumAndReluAndRequantize
    QuantizedDepthwiseConv2D QuantizedDepthwiseConv2DWithBias
    QuantizedDepthwiseConv2DWithBiasAndRelu QuantizedDepthwiseConv2DWithBiasAndReluAndRequantize
    QuantizedMatMulWithBias QuantizedMatMulWithBiasAndDequantize QuantizedMatMulWithBiasAndRelu
    QuantizedMatMulWithBiasAndReluAndRequantize QuantizedMatMulWithBiasAndRequantize
    QuantizedMaxPool QuantizedRelu QuantizedRelu6 QuantizedReluX Relu Relu6 Relu6Grad ReluGrad
    Selu SeluGrad Softmax SoftmaxCrossEntropyWithLogits Softplus SoftplusGrad Softsign
    SoftsignGrad SparseSoftmaxCrossEntropyWithLogits TopK TopKV2
""")

# Linear algebra, einsum, FFTs, roll (gen_linalg_ops, gen_spectral_ops, gen_manip_ops): pure.
LINALG_SIGNAL_OPS = _names("""
    BandedTriangularSolve BatchCholesky BatchCholeskyGrad BatchFFT BatchFFT2D BatchFFT3D
    BatchIFFT BatchIFFT2D BatchIFFT3D BatchMatrixDeterminant BatchMatrixInverse BatchMatrixSolve
    BatchMatrixSolveLs BatchMatrixTriangularSolve BatchSelfAdjointEig BatchSelfAdjointEigV2
    BatchSvd Cholesky CholeskyGrad Eig Einsum FFT FFT2D FFT3D FFTND IFFT IFFT2D IFFT3D IFFTND
    IRFFT IRFFT2D IRFFT3D IRFFTND LogMatrixDeterminant Lu MatrixDeterminant MatrixExponential
    MatrixInverse MatrixLogarithm MatrixSolve MatrixSolveLs MatrixSquareRoot
    MatrixTriangularSolve Qr RFFT RFFT2D RFFT3D RFFTND Roll SelfAdjointEig SelfAdjointEigV2 Svd
    TridiagonalMatMul TridiagonalSolve
""")

# Sparse and ragged tensors, set operations, bincounts, composite-tensor packing (gen_sparse_ops,
# gen_ragged_*_ops, gen_set_ops, gen_count_ops, gen_composite_tensor_ops): pure.
SPARSE_RAGGED_OPS = _names("""
    AddManySparseToTensorsMap AddSparseToTensorsMap CompositeTensorVariantFromComponents
    CompositeTensorVariantToComponents DenseCountSparseOutput DenseToDenseSetOperation
    DenseToSparseSetOperation DeserializeManySparse DeserializeSparse RaggedCountSparseOutput
    RaggedCross RaggedFillEmptyRows RaggedFillEmptyRowsGrad RaggedGather RaggedRange
    RaggedTensorFromVariant RaggedTensorToSparse RaggedTensorToTensor RaggedTensorToVariant
    RaggedTensorToVariantGradient SerializeManySparse SerializeSparse SetSize SparseAdd
    SparseAddGrad SparseConcat SparseCountSparseOutput SparseCross SparseCrossHashed
    SparseCrossV2 SparseDenseCwiseAdd SparseDenseCwiseDiv SparseDenseCwiseMul
    SparseFillEmptyRows SparseFillEmptyRowsGrad SparseReduceMax SparseReduceMaxSparse
    SparseReduceSum SparseReduceSumSparse SparseReorder SparseReshape SparseSlice
    SparseSliceGrad SparseSoftmax SparseSparseMaximum SparseSparseMinimum SparseSplit
    SparseTensorDenseAdd SparseTensorDenseMatMul SparseToDense SparseToSparseSetOperation
    TakeManySparseFromTensorsMap
""")

# Image and audio codecs and transforms working on tensors, never on files: DecodeJpeg/DecodePng
# take the encoded bytes as an input tensor; resizing, cropping, colour, NMS (gen_image_ops,
# gen_audio_ops).
IMAGE_AUDIO_OPS = _names("""
    AdjustContrast AdjustContrastv2 AdjustHue AdjustSaturation AudioSpectrogram
    CombinedNonMaxSuppression CropAndResize CropAndResizeGradBoxes CropAndResizeGradImage
    DecodeAndCropJpeg DecodeBmp DecodeGif DecodeImage DecodeJpeg DecodePng DecodeWav
    DrawBoundingBoxes DrawBoundingBoxesV2 EncodeJpeg EncodeJpegVariableQuality EncodePng
    EncodeWav ExtractGlimpse ExtractGlimpseV2 ExtractJpegShape GenerateBoundingBoxProposals
    HSVToRGB ImageProjectiveTransformV2 ImageProjectiveTransformV3 Mfcc NonMaxSuppression
    NonMaxSuppressionV2 NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5
    NonMaxSuppressionWithOverlaps QuantizedResizeBilinear RGBToHSV RandomCrop ResizeArea
    ResizeBicubic ResizeBicubicGrad ResizeBilinear ResizeBilinearGrad ResizeNearestNeighbor
    ResizeNearestNeighborGrad SampleDistortedBoundingBox SampleDistortedBoundingBoxV2
    ScaleAndTranslate ScaleAndTranslateGrad StatelessSampleDistortedBoundingBox
""")

# String ops and parsers of serialized data held in tensors: ParseExample* (tf.Example protos),
# DecodeCSV, DecodeRaw, ParseTensor, StringToNumber (gen_string_ops, gen_parsing_ops), and the
# two string formatters of the saver (ShardedFilename, ShardedFilespec), which only build names.
STRING_PARSING_OPS = _names("""
    AsString DecodeBase64 DecodeCSV DecodeCompressed DecodeJSONExample DecodePaddedRaw DecodeRaw
    EncodeBase64 ParseExample ParseExampleV2 ParseSequenceExample ParseSequenceExampleV2
    ParseSingleExample ParseSingleSequenceExample ParseTensor ReduceJoin RegexFullMatch
    RegexReplace SerializeTensor ShardedFilename ShardedFilespec StaticRegexFullMatch
    StaticRegexReplace StringFormat StringJoin StringLength StringLower StringNGrams StringSplit
    StringSplitV2 StringStrip StringToHashBucket StringToHashBucketFast StringToHashBucketStrong
    StringToNumber StringUpper Substr UnicodeDecode UnicodeDecodeWithOffsets UnicodeEncode
    UnicodeScript UnicodeTranscode UnsortedSegmentJoin
""")

# Random numbers, stateful and stateless, and candidate samplers (gen_random_ops,
# gen_stateless_random_ops*, gen_stateful_random_ops, gen_random_index_shuffle_ops,
# gen_candidate_sampling_ops): computed in memory. Not FixedUnigramCandidateSampler, which reads
# the vocabulary file named in its `vocab_file` attribute.
RANDOM_OPS = _names("""
    AllCandidateSampler ComputeAccidentalHits
    LearnedUnigramCandidateSampler LogUniformCandidateSampler Multinomial NonDeterministicInts
    ParameterizedTruncatedNormal RandomGamma RandomGammaGrad RandomIndexShuffle RandomPoisson
    RandomPoissonV2 RandomShuffle RandomStandardNormal RandomUniform RandomUniformInt
    RngReadAndSkip RngSkip StatefulRandomBinomial StatefulStandardNormal
    StatefulStandardNormalV2 StatefulTruncatedNormal StatefulUniform StatefulUniformFullInt
    StatefulUniformInt StatelessMultinomial StatelessParameterizedTruncatedNormal
    StatelessRandomBinomial StatelessRandomGammaV2 StatelessRandomGammaV3 StatelessRandomGetAlg
    StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg StatelessRandomNormal
    StatelessRandomNormalV2 StatelessRandomPoisson StatelessRandomUniform
    StatelessRandomUniformFullInt StatelessRandomUniformFullIntV2 StatelessRandomUniformInt
    StatelessRandomUniformIntV2 StatelessRandomUniformV2 StatelessShuffle
    StatelessTruncatedNormal StatelessTruncatedNormalV2 ThreadUnsafeUnigramCandidateSampler
    TruncatedNormal UniformCandidateSampler
""")

# Control flow and function calls (gen_control_flow_ops, gen_functional_ops): the functions they
# call are library functions, vetted op by op themselves (a call to a name that is not in the
# library is checked as an op). Assert only fails the call. Not Abort (ends the process), not
# RemoteCall (runs a function on another task), not Print/PrintV2 (write to stderr or to a file).
CONTROL_FLOW_OPS = _names("""
    Case ControlTrigger DeviceIndex Enter Exit FakeParam For If LoopCond Merge NextIteration
    NoOp PartitionedCall RefEnter RefExit RefMerge RefNextIteration RefSelect RefSwitch
    StatefulPartitionedCall StatelessCase StatelessIf StatelessWhile Switch SymbolicGradient
    ToBool While Assert
""")

# Variables (resource and reference) and optimizer updates of them (gen_resource_variable_ops,
# gen_state_ops, gen_training_ops): state inside the process; a SavedModel's variables are
# restored from its own `variables/` folder by TensorFlow, not by these ops.
VARIABLE_OPS = _names("""
    ApplyAdaMax ApplyAdadelta ApplyAdagrad ApplyAdagradDA ApplyAdagradV2 ApplyAdam ApplyAddSign
    ApplyCenteredRMSProp ApplyFtrl ApplyFtrlV2 ApplyGradientDescent ApplyMomentum ApplyPowerSign
    ApplyProximalAdagrad ApplyProximalGradientDescent ApplyRMSProp Assign AssignAdd
    AssignAddVariableOp AssignSub AssignSubVariableOp AssignVariableOp ConsumeMutexLock
    CountUpTo DestroyResourceOp DestroyTemporaryVariable DisableCopyOnRead IsVariableInitialized
    MutexLock MutexV2 ReadVariableOp ResourceApplyAdaMax ResourceApplyAdadelta
    ResourceApplyAdagrad ResourceApplyAdagradDA ResourceApplyAdagradV2 ResourceApplyAdam
    ResourceApplyAdamWithAmsgrad ResourceApplyAddSign ResourceApplyCenteredRMSProp
    ResourceApplyFtrl ResourceApplyFtrlV2 ResourceApplyGradientDescent
    ResourceApplyKerasMomentum ResourceApplyMomentum ResourceApplyPowerSign
    ResourceApplyProximalAdagrad ResourceApplyProximalGradientDescent ResourceApplyRMSProp
    ResourceCountUpTo ResourceGather ResourceGatherNd ResourceScatterAdd ResourceScatterDiv
    ResourceScatterMax ResourceScatterMin ResourceScatterMul ResourceScatterNdAdd
    ResourceScatterNdMax ResourceScatterNdMin ResourceScatterNdSub ResourceScatterNdUpdate
    ResourceScatterSub ResourceScatterUpdate ResourceSparseApplyAdadelta
    ResourceSparseApplyAdagrad ResourceSparseApplyAdagradDA ResourceSparseApplyAdagradV2
    ResourceSparseApplyCenteredRMSProp ResourceSparseApplyFtrl ResourceSparseApplyFtrlV2
    ResourceSparseApplyKerasMomentum ResourceSparseApplyMomentum
    ResourceSparseApplyProximalAdagrad ResourceSparseApplyProximalGradientDescent
    ResourceSparseApplyRMSProp ScatterAdd ScatterDiv ScatterMax ScatterMin ScatterMul
    ScatterNdAdd ScatterNdMax ScatterNdMin ScatterNdSub ScatterNdUpdate ScatterSub ScatterUpdate
    SparseApplyAdadelta SparseApplyAdagrad SparseApplyAdagradDA SparseApplyAdagradV2
    SparseApplyCenteredRMSProp SparseApplyFtrl SparseApplyFtrlV2 SparseApplyMomentum
    SparseApplyProximalAdagrad SparseApplyProximalGradientDescent SparseApplyRMSProp
    TemporaryVariable VarHandleOp VarIsInitializedOp Variable VariableShape VariableV2
""")

# In-memory hash tables, filled from tensors (gen_lookup_ops). Not InitializeTableFromTextFile*,
# which fill a table from a file.
LOOKUP_TABLE_OPS = _names("""
    AnonymousHashTable AnonymousMutableDenseHashTable AnonymousMutableHashTable
    AnonymousMutableHashTableOfTensors HashTable HashTableV2 InitializeTable InitializeTableV2
    LookupTableExport LookupTableExportV2 LookupTableFind LookupTableFindV2 LookupTableImport
    LookupTableImportV2 LookupTableInsert LookupTableInsertV2 LookupTableRemoveV2
    LookupTableSize LookupTableSizeV2 MutableDenseHashTable MutableDenseHashTableV2
    MutableHashTable MutableHashTableOfTensors MutableHashTableOfTensorsV2 MutableHashTableV2
""")

# Tensor lists, tensor maps, TensorArrays, stacks, dynamic partition/stitch, optionals (gen_list_ops,
# gen_map_ops, gen_optional_ops, part of gen_data_flow_ops): in-memory containers of while loops,
# RNNs and cond gradients. Not queues, barriers, accumulators or RecordInput (reads files).
TENSOR_LIST_OPS = _names("""
    OptionalFromValue OptionalGetValue OptionalHasValue OptionalNone
    DynamicPartition DynamicStitch EmptyTensorList EmptyTensorMap ParallelDynamicStitch Stack
    StackClose StackCloseV2 StackPop StackPopV2 StackPush StackPushV2 StackV2 TensorArray
    TensorArrayClose TensorArrayCloseV2 TensorArrayCloseV3 TensorArrayConcat TensorArrayConcatV2
    TensorArrayConcatV3 TensorArrayGather TensorArrayGatherV2 TensorArrayGatherV3
    TensorArrayGrad TensorArrayGradV2 TensorArrayGradV3 TensorArrayGradWithShape TensorArrayPack
    TensorArrayRead TensorArrayReadV2 TensorArrayReadV3 TensorArrayScatter TensorArrayScatterV2
    TensorArrayScatterV3 TensorArraySize TensorArraySizeV2 TensorArraySizeV3 TensorArraySplit
    TensorArraySplitV2 TensorArraySplitV3 TensorArrayUnpack TensorArrayV2 TensorArrayV3
    TensorArrayWrite TensorArrayWriteV2 TensorArrayWriteV3 TensorListConcat
    TensorListConcatLists TensorListConcatV2 TensorListElementShape TensorListFromTensor
    TensorListGather TensorListGetItem TensorListLength TensorListPopBack TensorListPushBack
    TensorListPushBackBatch TensorListReserve TensorListResize TensorListScatter
    TensorListScatterIntoExistingList TensorListScatterV2 TensorListSetItem TensorListSplit
    TensorListStack TensorMapErase TensorMapHasKey TensorMapInsert TensorMapLookup TensorMapSize
    TensorMapStackKeys
""")

GRAPH_OPS = (ARRAY_OPS | MATH_OPS | NN_OPS | LINALG_SIGNAL_OPS | SPARSE_RAGGED_OPS | IMAGE_AUDIO_OPS
             | STRING_PARSING_OPS | RANDOM_OPS | CONTROL_FLOW_OPS | VARIABLE_OPS | LOOKUP_TABLE_OPS | TENSOR_LIST_OPS)

# Checkpoint ops: they read and write files. Every SavedModel has a saver subgraph that uses them
# (`MetaGraphDef.saver_def`: its save tensor and restore op); they are allowed there and nowhere
# else, on paths built from the saver's filename tensor (see policy.py, "The saver subgraph").
SAVER_OPS = _names("SaveV2 RestoreV2 MergeV2Checkpoints Save SaveSlices Restore RestoreSlice")
# What builds a checkpoint path from the saver's filename inside a saver function, and the string
# constants TensorFlow's savers join to it (the temporary shard folder "<prefix>_temp/part", or
# "_temp_<uuid>/part" in TF1 savers, and ".part" for s3:// prefixes).
SAVER_PATH_OPS = _names("Identity StringJoin ShardedFilename ShardedFilespec Select SelectV2 StaticRegexFullMatch Pack Const")
SAVER_PATH_CONSTANTS = r"(_temp(_[0-9a-f]{32})?/part|\.part|part)"

# Object-graph `registered_name`s: classes TensorFlow's loader rebuilds by name. These two are the
# only ones TensorFlow 2.19 registers (lookup_ops.StaticHashTable, saved_model_utils'
# TrackableConstant for captured constants); they hold a table and a constant. A `registered_saver`
# (a Python saver run at restore) must be empty.
REGISTERED_OBJECTS = _names("tf.StaticHashTable tf.TrackableConstant")
